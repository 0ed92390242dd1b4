"""The one invariant between the registry and serving: which stages may take which
traffic.

| stage       | replace, ab, canary (live traffic) | shadow (a copy, never answered) |
|-------------|------------------------------------|---------------------------------|
| development | no: validate it first (staging)    | yes                             |
| staging     | yes                                | yes                             |
| production  | yes                                | yes                             |
| archived    | no                                 | no                              |

A development version has not passed its staging gate (validation, metrics), so it takes
no user's request; it may shadow live traffic to be checked on it. When a version is
promoted to production it becomes the model's primary deployment (its routing moves to
it, as `replace`), the previous production version drains, and the controller archives it
once drained: the MLflow `production` alias always names the version that serves.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.core.deployment import DeploySpec
from app.core.lifecycle import ModelStage
from app.core.routing import Strategy
from app.errors import Conflict, ErrorCode, InvalidInput, NotFound

LIVE_STAGES = frozenset({ModelStage.STAGING, ModelStage.PRODUCTION})
SHADOW_STAGES = frozenset({ModelStage.DEVELOPMENT, ModelStage.STAGING, ModelStage.PRODUCTION})


def check_stages(model: str, spec: DeploySpec, stages: Mapping[int, ModelStage]) -> None:
    """Refuse a deployment that would give a version traffic its stage may not take.

    Raises:
        NotFound: a version does not exist (`model_version_not_found`).
        InvalidInput: an archived version (field `version`).
        Conflict: a development version for live traffic (`stage_not_allowed`).
    """
    for version in spec.versions():
        stage = stages.get(version)
        if stage is None:
            raise NotFound(
                ErrorCode.MODEL_VERSION_NOT_FOUND,
                f"Model {model!r} has no version {version}.",
                model=model,
                version=version,
            )
        if stage is ModelStage.ARCHIVED:
            raise InvalidInput.for_field("version", f"version {version} is archived")
        allowed = SHADOW_STAGES if spec.strategy is Strategy.SHADOW else LIVE_STAGES
        if stage not in allowed:
            raise Conflict(
                ErrorCode.STAGE_NOT_ALLOWED,
                f"Version {version} of {model!r} is in {stage}: it may only shadow traffic "
                f"({spec.strategy} gives it live requests). Promote it to staging first.",
                model=model,
                version=version,
                stage=stage.value,
                strategy=spec.strategy.value,
            )
