"""Drift between a reference distribution (captured at training) and a window of traffic.

A reference keeps, per feature, what the comparisons need and nothing of the raw rows:

- numeric: a fine histogram (1,000 equal-width bins between the reference's 0.1% and
  99.9% quantiles, plus one overflow bin at each end) and the mean and standard deviation;
- categorical: the frequency of each category.

A window is binned on the same grid (one pass of arithmetic per feature, no sort), so a
window of 1,000,000 rows costs a few milliseconds per feature. From the two histograms:

- PSI and Jensen-Shannon distance (base 2) on ten reference-quantile bins (numeric) or on
  the categories (with one bin for categories the reference never saw);
- Kolmogorov-Smirnov: the largest CDF gap over the fine grid (exact to within the mass of
  one fine bin) with its asymptotic p-value, and Wasserstein-1 in units of the reference's
  standard deviation (both numeric only); chi-square for categoricals.

A feature drifts only when the window is large enough (`min_samples`: a handful of
requests says nothing), the difference is significant (p < alpha / the number of features
compared, Bonferroni: at most `alpha` of windows drawn from the reference itself flag any
feature) and the effect is large (PSI or KS statistic past its threshold): with millions
of rows every difference is significant, and only the effect size tells a real shift
from a trivial one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

FINE_BINS = 1000
COARSE_BINS = 10
REFERENCE_ARTIFACT = "monitoring/reference.json"  # in the version's MLflow run
PREDICTION = "__prediction__"  # the reference and window entry of the model's outputs
OTHER = "__other__"  # the bin for categories the reference never saw
_EPS = 1e-4  # floor for empty bins in PSI (the usual smoothing)


class FeatureKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature's reference: the fine histogram and its moments."""

    lo: float
    hi: float
    counts: tuple[int, ...]  # FINE_BINS + 2: below lo, the fine bins, above hi
    mean: float
    std: float
    count: int
    missing: int

    @property
    def coarse_starts(self) -> np.ndarray:
        """Fine-bin indices where the ten reference-quantile bins start."""
        cdf = np.cumsum(self.counts) / max(self.count, 1)
        cuts = np.searchsorted(cdf, np.arange(1, COARSE_BINS) / COARSE_BINS, side="left") + 1
        return np.unique(np.concatenate([[0], cuts.clip(1, len(self.counts) - 1)]))


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature's reference: how often each category was seen."""

    categories: tuple[str, ...]
    counts: tuple[int, ...]
    count: int
    missing: int


@dataclass(frozen=True)
class Reference:
    """Per feature (and for the predictions, under `prediction`), what the version is
    compared with: what training saw (`source` training), the run's logged dataset
    (dataset), or the version's first live traffic (live_window, with its time span)."""

    features: dict[str, NumericProfile | CategoricalProfile]
    rows: int
    source: str = "training"
    window: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "source": self.source,
            "window": list(self.window) if self.window else None,
            "features": {
                name: {
                    "kind": FeatureKind.NUMERIC
                    if isinstance(profile, NumericProfile)
                    else FeatureKind.CATEGORICAL,
                    **asdict(profile),
                }
                for name, profile in self.features.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        features: dict[str, NumericProfile | CategoricalProfile] = {}
        for name, entry in data["features"].items():
            fields = {k: v for k, v in entry.items() if k != "kind"}
            if entry["kind"] == FeatureKind.NUMERIC:
                fields["counts"] = tuple(fields["counts"])
                features[name] = NumericProfile(**fields)
            else:
                fields["counts"] = tuple(fields["counts"])
                fields["categories"] = tuple(fields["categories"])
                features[name] = CategoricalProfile(**fields)
        window = data.get("window")
        return cls(
            features=features,
            rows=int(data["rows"]),
            source=str(data.get("source", "training")),
            window=(float(window[0]), float(window[1])) if window else None,
        )


@dataclass(frozen=True)
class Thresholds:
    """When a feature counts as drifted (a model's monitoring policy sets these)."""

    psi: float = 0.2  # the usual "significant shift" line
    ks_statistic: float = 0.1  # largest CDF gap
    alpha: float = 0.01  # family-wise significance over a window's features
    min_samples: int = 200  # below this a window says nothing


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison over one window."""

    feature: str
    kind: FeatureKind
    samples: int
    missing_rate: float
    psi: float | None
    js_distance: float | None
    ks_statistic: float | None = None
    wasserstein: float | None = None  # in reference standard deviations
    p_value: float | None = None
    drifted: bool = False
    reason: str = ""
    reference_hist: list[float] = field(default_factory=list)  # coarse bins, proportions
    current_hist: list[float] = field(default_factory=list)
    bin_labels: list[str] = field(default_factory=list)


# -- capture -------------------------------------------------------------------------------


def profile(
    values: Sequence[Any] | np.ndarray, kind: FeatureKind | None = None
) -> NumericProfile | CategoricalProfile:
    """The reference profile of one feature's training values (kind guessed from dtype)."""
    array = np.asarray(values)
    if kind is None:
        kind = FeatureKind.NUMERIC if array.dtype.kind in "fiub" else FeatureKind.CATEGORICAL
    if kind is FeatureKind.NUMERIC:
        return _profile_numeric(array.astype(np.float64, copy=False))
    return _profile_categorical(array)


def capture(columns: Mapping[str, Sequence[Any] | np.ndarray]) -> Reference:
    """The reference of a training set: one profile per column."""
    features = {name: profile(values) for name, values in columns.items()}
    rows = len(next(iter(columns.values()))) if columns else 0
    return Reference(features=features, rows=rows)


def _profile_numeric(values: np.ndarray) -> NumericProfile:
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ValueError("no values to profile")
    lo, hi = (float(q) for q in np.quantile(present, [0.001, 0.999]))
    if hi <= lo:  # a (nearly) constant feature: a small grid around it
        lo, hi = lo - 0.5, lo + 0.5
    return NumericProfile(
        lo=lo,
        hi=hi,
        counts=tuple(int(c) for c in fine_counts(present, lo, hi)),
        mean=float(present.mean()),
        std=float(present.std()),
        count=int(present.size),
        missing=int(values.size - present.size),
    )


def _profile_categorical(values: np.ndarray) -> CategoricalProfile:
    keys = values.astype(str)
    missing = int(np.sum(keys == "None") + np.sum(keys == "nan"))
    categories, counts = np.unique(keys[(keys != "None") & (keys != "nan")], return_counts=True)
    return CategoricalProfile(
        categories=tuple(str(c) for c in categories),
        counts=tuple(int(c) for c in counts),
        count=int(counts.sum()),
        missing=missing,
    )


def fine_counts(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Counts on the fine grid: FINE_BINS equal-width bins over [lo, hi), and one bin each
    for values below lo and at or above hi. NaNs must be removed first."""
    scaled = (values - lo) * (FINE_BINS / (hi - lo))
    np.floor(scaled, out=scaled)
    np.clip(scaled, -1, FINE_BINS, out=scaled)
    return np.bincount((scaled + 1).astype(np.intp), minlength=FINE_BINS + 2)


# -- compare -------------------------------------------------------------------------------


def compare(
    reference: Reference,
    window: Mapping[str, Sequence[Any] | np.ndarray],
    thresholds: Thresholds = Thresholds(),
    threads: int = 2,
) -> list[FeatureDrift]:
    """Each reference feature present in the window, compared (features in parallel:
    numpy releases the GIL in the binning)."""
    names = [name for name in reference.features if name in window]

    def one(name: str) -> FeatureDrift:
        profile = reference.features[name]
        values = np.asarray(window[name])
        if isinstance(profile, NumericProfile):
            try:
                values = values.astype(np.float64)
            except (TypeError, ValueError):
                return FeatureDrift(
                    name,
                    FeatureKind.NUMERIC,
                    0,
                    1.0,
                    None,
                    None,
                    reason="values are not numbers (the reference's are)",
                )
            return compare_numeric(name, profile, values, thresholds, len(names))
        return compare_categorical(name, profile, values, thresholds, len(names))

    if threads <= 1 or len(names) <= 1:
        return [one(name) for name in names]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, names))


def compare_numeric(
    name: str, ref: NumericProfile, values: np.ndarray, thresholds: Thresholds, tests: int = 1
) -> FeatureDrift:
    values = values.astype(np.float64, copy=False)
    nan = np.isnan(values)
    missing = int(nan.sum())
    present = values[~nan] if missing else values
    n = int(present.size)
    missing_rate = missing / values.size if values.size else 0.0
    if n == 0:
        return FeatureDrift(
            name, FeatureKind.NUMERIC, 0, missing_rate, None, None, reason="no values in the window"
        )
    cur = fine_counts(present, ref.lo, ref.hi).astype(np.float64)
    ref_counts = np.asarray(ref.counts, dtype=np.float64)
    ref_p, cur_p = ref_counts / ref_counts.sum(), cur / cur.sum()
    starts = ref.coarse_starts
    ref_coarse, cur_coarse = np.add.reduceat(ref_p, starts), np.add.reduceat(cur_p, starts)
    psi = _psi(ref_coarse, cur_coarse)
    js = _js(ref_coarse, cur_coarse)
    gaps = np.abs(np.cumsum(ref_p) - np.cumsum(cur_p))
    ks = float(gaps.max())
    effective = n * ref.count / (n + ref.count)
    p_value = float(stats.kstwobign.sf(ks * math.sqrt(effective)))
    width = (ref.hi - ref.lo) / FINE_BINS
    # Wasserstein-1 between the binned distributions: the area between the CDFs
    # (the overflow bins sit at the grid's ends), in reference standard deviations.
    wasserstein = float(gaps[:-1].sum() * width / ref.std) if ref.std > 0 else 0.0
    edges = ref.lo + starts[1:].astype(np.float64) * width - width
    labels = _interval_labels(edges)
    return _decide(
        FeatureDrift(
            name,
            FeatureKind.NUMERIC,
            n,
            missing_rate,
            psi,
            js,
            ks,
            wasserstein,
            p_value,
            reference_hist=ref_coarse.round(6).tolist(),
            current_hist=cur_coarse.round(6).tolist(),
            bin_labels=labels,
        ),
        thresholds,
        tests,
    )


def compare_categorical(
    name: str, ref: CategoricalProfile, values: np.ndarray, thresholds: Thresholds, tests: int = 1
) -> FeatureDrift:
    keys = values.astype(str)
    present_mask = (keys != "None") & (keys != "nan")
    present = keys[present_mask]
    n = int(present.size)
    missing_rate = 1 - n / keys.size if keys.size else 0.0
    if n == 0:
        return FeatureDrift(
            name,
            FeatureKind.CATEGORICAL,
            0,
            missing_rate,
            None,
            None,
            reason="no values in the window",
        )
    seen, counts = np.unique(present, return_counts=True)
    index = {category: i for i, category in enumerate(ref.categories)}
    cur = np.zeros(len(ref.categories) + 1)
    for category, count in zip(seen.tolist(), counts.tolist(), strict=True):
        cur[index.get(category, len(ref.categories))] += count
    ref_counts = np.append(np.asarray(ref.counts, dtype=np.float64), 0.0)
    ref_p, cur_p = ref_counts / ref_counts.sum(), cur / cur.sum()
    psi = _psi(ref_p, cur_p)
    js = _js(ref_p, cur_p)
    expected = np.maximum(ref_p, _EPS)
    expected = expected / expected.sum() * n
    p_value = float(stats.chisquare(cur, expected).pvalue)
    return _decide(
        FeatureDrift(
            name,
            FeatureKind.CATEGORICAL,
            n,
            missing_rate,
            psi,
            js,
            None,
            None,
            p_value,
            reference_hist=ref_p.round(6).tolist(),
            current_hist=cur_p.round(6).tolist(),
            bin_labels=[*ref.categories, OTHER],
        ),
        thresholds,
        tests,
    )


def _js(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (scipy returns NaN for nearly equal histograms:
    a rounding below zero under its square root; that distance is 0)."""
    value = float(jensenshannon(ref, cur, base=2))
    return 0.0 if math.isnan(value) else value


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = np.maximum(ref, _EPS), np.maximum(cur, _EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def _decide(result: FeatureDrift, thresholds: Thresholds, tests: int) -> FeatureDrift:
    if result.samples < thresholds.min_samples:
        reason = f"{result.samples} samples, below the minimum of {thresholds.min_samples}"
        return replace(result, reason=reason)
    # Bonferroni over the features of the window: at most `alpha` of windows from the
    # reference distribution show any significant feature.
    significant = result.p_value is not None and result.p_value < thresholds.alpha / tests
    effects = []
    if result.psi is not None and result.psi >= thresholds.psi:
        effects.append(f"PSI {result.psi:.3f} >= {thresholds.psi}")
    if result.ks_statistic is not None and result.ks_statistic >= thresholds.ks_statistic:
        effects.append(f"KS {result.ks_statistic:.3f} >= {thresholds.ks_statistic}")
    if significant and effects:
        return replace(result, drifted=True, reason="; ".join(effects))
    if effects:
        return replace(result, reason=f"not significant (p={result.p_value:.3g})")
    return replace(result, reason="effect below thresholds")


def _interval_labels(edges: np.ndarray) -> list[str]:
    points = [f"{edge:.6g}" for edge in edges]
    if not points:
        return ["all"]
    return [
        f"< {points[0]}",
        *(f"[{a}, {b})" for a, b in itertools.pairwise(points)),
        f">= {points[-1]}",
    ]
