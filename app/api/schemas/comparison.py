"""Wire models of a side-by-side run comparison."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.schemas.runs import RunPublic
from app.core.comparison import Goal, RunComparison


class ParamRowOut(BaseModel):
    """One param across the compared runs."""

    key: str
    values: dict[str, str | None] = Field(description="By run id; null where a run lacks it.")
    differs: bool = Field(description="Whether the runs disagree on it.")


class MetricRowOut(BaseModel):
    """One metric's latest value across the compared runs."""

    key: str
    goal: Goal = Field(description="Which direction is better (name heuristic or your word).")
    values: dict[str, float | None]
    best_run_ids: list[str] = Field(description="Runs holding the best value.")
    differs: bool


class RunComparisonPublic(BaseModel):
    """Runs side by side: params and metrics aligned, differences flagged, bests marked."""

    run_ids: list[str]
    runs: list[RunPublic]
    params: list[ParamRowOut]
    metrics: list[MetricRowOut]

    @classmethod
    def of(cls, comparison: RunComparison, runs: list[RunPublic]) -> RunComparisonPublic:
        """Wire form of a comparison."""
        return cls(
            run_ids=list(comparison.run_ids),
            runs=runs,
            params=[
                ParamRowOut(key=r.key, values=r.values, differs=r.differs)
                for r in comparison.params
            ],
            metrics=[
                MetricRowOut(
                    key=r.key,
                    goal=r.goal,
                    values=r.values,
                    best_run_ids=list(r.best_run_ids),
                    differs=r.differs,
                )
                for r in comparison.metrics
            ],
        )
