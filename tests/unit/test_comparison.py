import math

from app.core.comparison import Goal, compare_runs, goal_of
from app.core.tracking import MetricPoint, Run, RunStatus


def run(run_id: str, params: dict[str, str], metrics: dict[str, float]) -> Run:
    return Run(
        id=run_id,
        experiment_id="1",
        name=run_id,
        status=RunStatus.FINISHED,
        start_ms=0,
        end_ms=1,
        params=params,
        metrics={k: MetricPoint(k, v, 0, 0) for k, v in metrics.items()},
        tags={},
        datasets=(),
        artifact_uri="",
        user=None,
    )


def test_goal_heuristic_and_overrides() -> None:
    assert goal_of("val_loss") is Goal.MINIMIZE
    assert goal_of("rmse") is Goal.MINIMIZE
    assert goal_of("p99_latency_ms") is Goal.MINIMIZE
    assert goal_of("accuracy") is Goal.MAXIMIZE
    assert goal_of("auc") is Goal.MAXIMIZE
    assert goal_of("accuracy", minimize={"accuracy"}) is Goal.MINIMIZE
    assert goal_of("loss", maximize={"loss"}) is Goal.MAXIMIZE


def test_aligns_params_flags_differences_marks_bests() -> None:
    a = run("a", {"lr": "0.1", "depth": "3"}, {"accuracy": 0.9, "loss": 0.3})
    b = run("b", {"lr": "0.2", "depth": "3"}, {"accuracy": 0.95, "loss": 0.4})
    c = run("c", {"lr": "0.1"}, {"accuracy": 0.95})
    result = compare_runs([a, b, c])
    assert result.run_ids == ("a", "b", "c")
    params = {row.key: row for row in result.params}
    assert params["lr"].differs and params["lr"].values == {"a": "0.1", "b": "0.2", "c": "0.1"}
    assert params["depth"].differs and params["depth"].values["c"] is None
    metrics = {row.key: row for row in result.metrics}
    assert metrics["accuracy"].best_run_ids == ("b", "c")  # a tie marks both
    assert metrics["loss"].goal is Goal.MINIMIZE
    assert metrics["loss"].best_run_ids == ("a",)
    assert metrics["loss"].values["c"] is None


def test_identical_values_do_not_differ_and_nan_is_never_best() -> None:
    a = run("a", {"lr": "0.1"}, {"f1": math.nan})
    b = run("b", {"lr": "0.1"}, {"f1": 0.5})
    result = compare_runs([a, b])
    assert not result.params[0].differs
    assert result.metrics[0].best_run_ids == ("b",)
