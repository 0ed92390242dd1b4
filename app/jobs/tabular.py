"""Tabular training data through Ray Data: read (or generate), split, standardise, digest."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from app.adapters.storage import parquet_bytes
from app.jobs.spec import DatasetSpec
from app.samples import churn

if TYPE_CHECKING:
    from app.jobs.context import JobContext

log = logging.getLogger(__name__)


IN_MEMORY_CELLS = 100_000_000  # up to this many values (800 MB as float64): read at once
SAMPLE_ROWS = 100_000  # at most this many rows of each split kept for the drift reference


@dataclass
class TabularData:
    """The training and validation sets, and what lineage records about them."""

    train: Any  # ray.data.Dataset
    val: Any
    features: list[str]
    target: str
    mean: list[float]
    std: list[float]
    name: str
    source: str
    digest: str
    schema: dict[str, str]
    rows: int
    example: Any  # a few validation rows (DataFrame): named columns in, for the signature
    feature_service: str | None
    train_sample: Any  # the first SAMPLE_ROWS training rows' features (DataFrame)
    val_sample: Any  # the same of the validation rows
    val_target_mean: float  # the constant predictor's baseline
    val_target_std: float
    feature_signature: list[list[str]] | None = None  # the service's (feature, type) trained on
    # the same splits as arrow tables, where they were read in memory (None on the cluster)
    train_table: Any = None
    val_table: Any = None


def load(spec: DatasetSpec, context: JobContext) -> TabularData:
    """Read the parquet data (writing a generated dataset first), split it and describe it.

    Data that fits in memory (IN_MEMORY_CELLS) is read, split and described in one pass by
    pyarrow and numpy, and kept as those tables (the built-in trainers' workers take their
    shards from the object store) and as Ray Datasets of them (a training function of
    your own reads `get_dataset_shard`): every Ray Data execution here costs seconds of
    tasks and worker start-ups on a busy cluster (65 s for a 20,000-row file described
    column by column on an idle 2-CPU one, 0.06 s this way). Larger data is split and
    described by Ray Data on the cluster."""
    import pyarrow.dataset as pads

    served: list[str] | None = None
    signature: list[list[str]] | None = None
    if spec.feature_service:
        path, served, signature = _training_set(spec, context)
    else:
        path = _materialise(spec, context) if spec.generate else location(str(spec.path))
    filesystem, inside = context.storage.locate(path)
    source = pads.dataset(inside, filesystem=filesystem, format="parquet")
    schema = {field.name: str(field.type) for field in source.schema}
    if spec.target not in schema:
        raise ValueError(f"the dataset has no target column {spec.target!r}")
    features = spec.features or served or [c for c in schema if c not in (spec.target, "id")]
    if not features:
        raise ValueError(f"the dataset has no feature column beside the target {spec.target!r}")
    missing = [f for f in features if f not in schema]
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}")
    rows = source.count_rows()
    seed = spec.generate.seed if spec.generate else 0
    columns = [*features, spec.target]
    if rows * len(columns) <= IN_MEMORY_CELLS:
        split = _split_in_memory(
            source.to_table(columns=columns), features, spec.target, spec.validation_fraction, seed
        )
    else:
        split = _split_on_cluster(
            ray.data.read_parquet(inside, filesystem=filesystem).select_columns(columns),
            features,
            spec.target,
            spec.validation_fraction,
            seed,
        )
    log.info("dataset %s: %d rows, %d features, target %s", path, rows, len(features), spec.target)
    return TabularData(
        features=features,
        target=spec.target,
        name=posixpath.splitext(posixpath.basename(path.rstrip("/")))[0],
        source=path,
        digest=context.storage.digest(path),
        schema=schema,
        rows=rows,
        feature_service=spec.feature_service,
        feature_signature=signature,
        **split,
    )


def _split_in_memory(
    table: Any, features: list[str], target: str, fraction: float, seed: int
) -> dict[str, Any]:
    """A seeded random split of an arrow table, its statistics, and both halves as arrow
    tables and as Ray Datasets."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(table.num_rows)
    cut = table.num_rows - int(round(table.num_rows * fraction))
    train, val = table.take(order[:cut]), table.take(order[cut:])
    x = np.column_stack([_floats(train, f) for f in features])
    y = _floats(val, target)
    with warnings.catch_warnings():  # an empty or all-null column: no mean, scaled by 1
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0, ddof=1)
        label_mean, label_std = np.nanmean(y), np.nanstd(y, ddof=1)
    return {
        "train": ray.data.from_arrow(train),
        "val": ray.data.from_arrow(val),
        "train_table": train,
        "val_table": val,
        "mean": [_number(v) for v in mean],
        "std": [_spread(float(v)) for v in std],
        "example": val.slice(0, 5).select(features).to_pandas().astype("float64"),
        "train_sample": train.slice(0, SAMPLE_ROWS).select(features).to_pandas(),
        "val_sample": val.slice(0, SAMPLE_ROWS).select(features).to_pandas(),
        "val_target_mean": _number(label_mean),
        "val_target_std": _number(label_std),
    }


def _split_on_cluster(
    dataset: Any, features: list[str], target: str, fraction: float, seed: int
) -> dict[str, Any]:
    """The same with Ray Data: a shuffled split, materialised, described in one pass per
    half."""
    from ray.data.aggregate import Mean, Std

    train, val = dataset.train_test_split(test_size=fraction, shuffle=True, seed=seed)
    train, val = train.materialize(), val.materialize()
    stats = train.aggregate(*[Mean(f) for f in features], *[Std(f) for f in features])
    label = val.aggregate(Mean(target), Std(target))
    return {
        "train": train,
        "val": val,
        "mean": [_number(stats[f"mean({f})"]) for f in features],
        "std": [_spread(_number(stats[f"std({f})"])) for f in features],
        "example": val.limit(5).to_pandas()[features].astype("float64"),
        "train_sample": train.select_columns(features).limit(SAMPLE_ROWS).to_pandas(),
        "val_sample": val.select_columns(features).limit(SAMPLE_ROWS).to_pandas(),
        "val_target_mean": _number(label[f"mean({target})"]),
        "val_target_std": _number(label[f"std({target})"]),
    }


def _floats(table: Any, column: str) -> Any:
    import numpy as np

    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)


def _number(value: Any) -> float:
    """A statistic as a float; 0 where there is none (no rows, or only nulls)."""
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0


def _spread(std: float) -> float:
    """A standard deviation to scale by: 1 for a constant (or undefined) column."""
    return std or 1.0


def location(path: str) -> str:
    """A dataset location a job can read on any node: a URI as given, a local path made
    absolute (relative paths are taken from the job's working directory)."""
    return path if "://" in path else os.path.abspath(path)


def _materialise(spec: DatasetSpec, context: JobContext) -> str:
    """Write the generated sample dataset as parquet, content-addressed in the storage's
    `datasets/` (the same seed and size give the same file)."""
    assert spec.generate is not None
    key = f"datasets/churn-{spec.generate.rows}-{spec.generate.seed}.parquet"
    if not context.storage.exists(key):  # two jobs starting together may both write it
        frame = churn.generate(spec.generate.rows, spec.generate.seed)
        context.storage.write_bytes(key, parquet_bytes(frame))
    return context.storage.uri(key)


def _training_set(spec: DatasetSpec, context: JobContext) -> tuple[str, list[str], list[list[str]]]:
    """Point-in-time-correct features for the entity rows, from the feature service,
    written as parquet (content-addressed) so that the digest covers what was trained on."""
    import pyarrow.parquet as pq

    assert spec.feature_service and spec.entities
    from app.core.features import service_signature

    filesystem, inside = context.storage.locate(location(spec.entities))
    entity_df = pq.read_table(inside, filesystem=filesystem).to_pandas()
    store = context.feature_store()
    signature = service_signature(store.catalog(), spec.feature_service)
    if signature is None:
        raise ValueError(f"no feature service {spec.feature_service!r}")
    frame = store.historical(entity_df, spec.feature_service)
    served = [c for c in frame.columns if c not in entity_df.columns]
    complete = frame.dropna(subset=served)
    if len(complete) < len(frame):
        log.warning(
            "%d of %d entity rows have no feature value at their timestamp (older than the "
            "TTL, or none yet): left out of training",
            len(frame) - len(complete),
            len(frame),
        )
    if len(complete) < 10:
        raise ValueError(
            f"the feature service {spec.feature_service!r} has values for only "
            f"{len(complete)} of {len(frame)} entity rows at their timestamps: no "
            "snapshot within the TTL before these labels' timestamps?"
        )
    data = parquet_bytes(complete.drop(columns=["event_timestamp"]))
    content = hashlib.sha256(data).hexdigest()[:16]
    key = f"datasets/{spec.feature_service}-{content}.parquet"
    context.storage.write_bytes(key, data)
    log.info(
        "training set from feature service %s: %d rows (of %d entity rows)",
        spec.feature_service,
        len(complete),
        len(entity_df),
    )
    return context.storage.uri(key), served, [list(s) for s in signature]


def schema_json(data: TabularData) -> str:
    """The dataset's schema as MLflow stores it."""
    return json.dumps({"columns": data.schema, "features": data.features, "target": data.target})
