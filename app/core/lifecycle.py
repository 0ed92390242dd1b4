"""The model lifecycle: stages and the legal moves between them."""

from __future__ import annotations

from enum import StrEnum

from app.errors import Conflict, ErrorCode


class ModelStage(StrEnum):
    """Where a model version stands. MLflow's own string stages are deprecated; the service
    keeps the stage and mirrors it into MLflow aliases and tags."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# The edges of the lifecycle; each has its gates (app.core.gates).
TRANSITIONS: dict[ModelStage, ModelStage] = {
    ModelStage.DEVELOPMENT: ModelStage.STAGING,
    ModelStage.STAGING: ModelStage.PRODUCTION,
    ModelStage.PRODUCTION: ModelStage.ARCHIVED,
}

# Stages that hold one version at a time; MLflow gets an alias of the same name for each.
SINGULAR_STAGES = (ModelStage.STAGING, ModelStage.PRODUCTION)


def check_transition(model: str, version: int, current: ModelStage, target: ModelStage) -> None:
    """Refuse a move that is not an edge of the lifecycle.

    Raises:
        Conflict: `current -> target` is not legal (`illegal_transition`); this is also
            what a losing concurrent promotion gets, since the winner moved the version.
    """
    if TRANSITIONS.get(current) is not target:
        expected = next((s for s, t in TRANSITIONS.items() if t is target), None)
        raise Conflict(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Version {version} of {model!r} is in {current}; only a version in "
            f"{expected or 'no stage'} can move to {target}.",
            model=model,
            version=version,
            stage=current.value,
            target=target.value,
        )
