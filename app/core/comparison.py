"""Side-by-side comparison of runs: params and metrics aligned, differences and bests marked."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.core.tracking import Run


class Goal(StrEnum):
    """Which direction of a metric is better."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


# Metric names that are better when lower, unless the caller says otherwise.
_LOWER_IS_BETTER = re.compile(
    r"(loss|error|err|rmse|mse|mae|mape|smape|logloss|perplexity|latency|duration|time|"
    r"cost|regret|fpr|fnr|brier|wer|cer|distance|divergence)",
    re.IGNORECASE,
)


def goal_of(metric: str, minimize: Collection[str] = (), maximize: Collection[str] = ()) -> Goal:
    """The goal of a metric: the caller's word first, else a name heuristic (loss, error,
    rmse, latency ... are minimised; everything else maximised)."""
    if metric in minimize:
        return Goal.MINIMIZE
    if metric in maximize:
        return Goal.MAXIMIZE
    return Goal.MINIMIZE if _LOWER_IS_BETTER.search(metric) else Goal.MAXIMIZE


@dataclass(frozen=True)
class ParamRow:
    """One param across the compared runs (None where a run lacks it)."""

    key: str
    values: dict[str, str | None]
    differs: bool


@dataclass(frozen=True)
class MetricRow:
    """One metric's latest value across the compared runs, and which runs hold the best."""

    key: str
    goal: Goal
    values: dict[str, float | None]
    best_run_ids: tuple[str, ...]
    differs: bool


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side, in the order the caller asked for them."""

    run_ids: tuple[str, ...]
    params: tuple[ParamRow, ...]
    metrics: tuple[MetricRow, ...]


def compare_runs(
    runs: Sequence[Run], minimize: Collection[str] = (), maximize: Collection[str] = ()
) -> RunComparison:
    """Align params and metrics of `runs`; flag differing values and mark the best runs."""
    ids = tuple(run.id for run in runs)
    param_keys = sorted({key for run in runs for key in run.params})
    metric_keys = sorted({key for run in runs for key in run.metrics})
    params = tuple(_param_row(key, runs) for key in param_keys)
    metrics = tuple(_metric_row(key, runs, goal_of(key, minimize, maximize)) for key in metric_keys)
    return RunComparison(run_ids=ids, params=params, metrics=metrics)


def _param_row(key: str, runs: Sequence[Run]) -> ParamRow:
    values = {run.id: run.params.get(key) for run in runs}
    return ParamRow(key=key, values=values, differs=len(set(values.values())) > 1)


def _metric_row(key: str, runs: Sequence[Run], goal: Goal) -> MetricRow:
    values = {run.id: (run.metrics[key].value if key in run.metrics else None) for run in runs}
    present = [v for v in values.values() if v is not None and not math.isnan(v)]
    best_ids: tuple[str, ...] = ()
    if present:
        best = min(present) if goal is Goal.MINIMIZE else max(present)
        best_ids = tuple(run_id for run_id, value in values.items() if value == best)
    return MetricRow(
        key=key,
        goal=goal,
        values=values,
        best_run_ids=best_ids,
        differs=len(set(values.values())) > 1,
    )


# Metrics that describe how a run went, not how good its model is: never compared by a
# gate unless a policy names them.
_BOOKKEEPING = re.compile(
    r"^(epoch|epochs|step|steps|lr|learning_rate|trials|total_epochs|rows_written)$"
    r"|^(train|training|baseline)_"
    r"|(_seconds|_per_second|_time|_duration)$",
    re.IGNORECASE,
)


def evaluation_metrics(
    metrics: Collection[str], declared: Mapping[str, str] | None = None
) -> dict[str, Goal]:
    """The metrics that say how good a model is, with their goals: those its run declared
    (name -> maximize/minimize), else every logged metric but the bookkeeping ones
    (epoch, train_*, baseline_*, *_seconds, rows_per_second ...)."""
    if declared:
        return {name: Goal(goal) for name, goal in declared.items()}
    return {m: goal_of(m) for m in sorted(metrics) if not _BOOKKEEPING.search(m)}
