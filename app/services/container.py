"""Every use case the API serves, as one value the composition root builds and hands to
`app.api.factory.create_api`. What is None is not part of this service (its routes
answer 503)."""

from __future__ import annotations

from dataclasses import dataclass

from app.ports.background import Background
from app.ports.health import HealthProbe
from app.ports.registry import ModelRegistry, ModelSignatures
from app.ports.tracking import ExperimentTracker
from app.services.deployments import Deployments
from app.services.diagnostics import Diagnostics
from app.services.features import Features
from app.services.lifecycle import Promotions
from app.services.llm import LlmGateway
from app.services.monitoring import Monitoring
from app.services.prediction import Predictor
from app.services.tokens import ApiTokens
from app.services.training import TrainingJobs


@dataclass(frozen=True)
class Services:
    """The API's use cases and ports.

    Args:
        tracker: experiments and runs (MLflow).
        probes: what `/health` reports.
        registry: registered models, versions, approvals, policies, the audit log.
        signatures: each version's input signature and example.
        promotions: promotions through the gates, with serving evidence.
        deployments: deploy, undeploy, the live view, feedback.
        predictor: the predict path.
        jobs: training, tuning and batch-prediction jobs.
        features: the feature store.
        monitoring: drift, alerts and the per-model live view.
        llm: the OpenAI-compatible LLM routes.
        diagnostics: findings about a model and the assistant's explanation.
        tokens: the tokens made through the API (their holders are authenticated too).
        background: started and stopped with the app (routing-table follower, stats and
            prediction-log flushers, sample-rate poller).
    """

    tracker: ExperimentTracker
    probes: tuple[HealthProbe, ...] = ()
    registry: ModelRegistry | None = None
    signatures: ModelSignatures | None = None
    promotions: Promotions | None = None
    deployments: Deployments | None = None
    predictor: Predictor | None = None
    jobs: TrainingJobs | None = None
    features: Features | None = None
    monitoring: Monitoring | None = None
    llm: LlmGateway | None = None
    diagnostics: Diagnostics | None = None
    tokens: ApiTokens | None = None
    background: tuple[Background, ...] = ()
