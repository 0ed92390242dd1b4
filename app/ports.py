"""The ports: capabilities the service needs from its engines, as small Protocols.

Adapters are named after the technology (`MlflowExperimentTracker`); the API and the
deployments depend only on these Protocols. Every method documents the domain errors
it raises; adapters translate their engine's errors into those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from app.core.audit import AuditEvent
from app.core.canary import Rollout
from app.core.deployment import DeploymentView, DeploySpec
from app.core.features import Catalog, OnlineFeatures
from app.core.feedback import Feedback, PredictionRef
from app.core.gates import Approval, Evidence, PromotionPolicy, ValidationReport
from app.core.jobs import JobRecord, JobRun
from app.core.lifecycle import ModelStage
from app.core.monitoring import Alert, AlertState, MonitoringPolicy
from app.core.registry import (
    ModelVersion,
    ModelView,
    PromotionResult,
    Registration,
    RegistryState,
    RegistryWrite,
)
from app.core.routing import RoutingTable
from app.core.serving_stats import VariantStats
from app.core.tracking import (
    Experiment,
    MetricPoint,
    NewExperiment,
    Page,
    Run,
    RunQuery,
    RunRecord,
    RunUpdate,
)


class ExperimentTracker(Protocol):
    """Experiments and runs in a tracking store."""

    def create_experiment(
        self, new: NewExperiment, idempotency_key: str | None = None, request_digest: str = ""
    ) -> tuple[Experiment, bool]:
        """Create an experiment.

        Args:
            new: name, tags and description.
            idempotency_key: a retry with the same key and request returns the first result.
            request_digest: digest of the request, to tell a retry from a different request.

        Returns:
            The experiment, and True if this call created it (False for a replayed retry).

        Raises:
            Conflict: the name is taken (`experiment_already_exists`), or the key was used
                for a different request (`idempotency_key_reused`).
            Unavailable: the store cannot be reached.
        """
        ...

    def get_experiment(self, experiment_id: str) -> Experiment:
        """One experiment by id.

        Raises:
            NotFound: no such experiment (`experiment_not_found`).
        """
        ...

    def list_experiments(
        self, name_contains: str | None, page_size: int, page_token: str | None
    ) -> Page[Experiment]:
        """Active experiments, optionally filtered by a case-insensitive name substring.

        Raises:
            InvalidInput: the backend rejected `page_token` (`invalid_page_token`).
        """
        ...

    def log_run(
        self,
        experiment_id: str,
        record: RunRecord,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[Run, bool]:
        """Log a whole run (params, metrics with steps and timestamps, tags, datasets).

        All or nothing: if any part fails, the run is removed again. `idempotency_key` and
        `request_digest` work as in `create_experiment`.

        Returns:
            The run as stored, and True if this call created it (False for a replay).

        Raises:
            NotFound: the experiment does not exist or is deleted.
            Conflict: the idempotency key was used for a different request.
            InvalidInput: the store refused a value.
        """
        ...

    def update_run(self, experiment_id: str, run_id: str, update: RunUpdate) -> Run:
        """Append data to an ongoing run and optionally end it.

        Raises:
            NotFound: no such run in this experiment (`run_not_found`).
            Conflict: the run has already ended (`run_already_terminated`).
        """
        ...

    def get_run(self, experiment_id: str, run_id: str) -> Run:
        """One run of an experiment.

        Raises:
            NotFound: no such experiment, or no such run in it.
        """
        ...

    def search_runs(
        self, experiment_id: str, query: RunQuery, page_size: int, page_token: str | None
    ) -> Page[Run]:
        """Runs of an experiment matching an MLflow filter, in the requested order.

        Raises:
            NotFound: no such experiment.
            InvalidInput: the filter (`invalid_filter`), ordering or page token is invalid.
        """
        ...

    def metric_history(self, experiment_id: str, run_id: str, key: str) -> Sequence[MetricPoint]:
        """Every logged value of one metric of a run, by step then time.

        Raises:
            NotFound: no such run in this experiment.
        """
        ...


class HealthStatus(StrEnum):
    """A component's health."""

    OK = "ok"
    DOWN = "down"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ComponentHealth:
    """The result of probing one component."""

    name: str
    status: HealthStatus
    detail: str = ""
    latency_ms: float = 0.0
    required: bool = True


class HealthProbe(Protocol):
    """Something whose health the service reports."""

    name: str

    def probe(self) -> ComponentHealth:
        """Check the component now; never raise, report DOWN with a short reason instead."""
        ...


@dataclass(frozen=True)
class ModelSource:
    """A model logged by a run, as the registry needs to know it."""

    uri: str
    run_id: str
    experiment_id: str
    signature: Mapping[str, Any] | None
    artifact_digest: str
    metrics: Mapping[str, float]
    datasets: tuple[Mapping[str, Any], ...] = ()
    feature_service: str | None = None
    code_version: str | None = None
    parent_run_id: str | None = None


class ModelCatalog(Protocol):
    """Model versions in a model registry, and the stages mirrored onto them."""

    def describe(self, run_id: str, artifact_path: str) -> ModelSource:
        """Resolve the model a run logged: its URI, signature, digest, metrics and lineage.

        Raises:
            InvalidInput: no such run, or the run logged no model at `artifact_path`
                (`model_source_not_found`).
        """
        ...

    def create_version(
        self, name: str, source: ModelSource, description: str, tags: Mapping[str, str]
    ) -> int:
        """Register `source` as a new version of model `name` (created if new); its number."""
        ...

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version (to undo a registration that could not be recorded)."""
        ...

    def mirror(
        self,
        name: str,
        stages: Mapping[int, str],
        semvers: Mapping[int, str],
        aliases: Mapping[str, int],
    ) -> None:
        """Make the registry show the service's stages: a stage and semver tag on each given
        version, and exactly the given stage aliases (others of the service removed)."""
        ...

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases as the registry holds them."""
        ...


class ModelValidator(Protocol):
    """Automated validation of a registered model version."""

    async def validate(self, model_uri: str) -> ValidationReport:
        """Load the model, predict on its input example, check the output against its
        signature; never raises for a bad model, reports the failing step instead."""
        ...


class ServingEvidence(Protocol):
    """What serving knows about a version: live checks, A/B verdicts, traffic."""

    async def integration(self, model: str, version: int) -> Evidence | None:
        """Health and request counts of the version's live deployment (None: not deployed)."""
        ...

    async def ab_verdict(self, model: str, candidate: int, baseline: int | None) -> Evidence | None:
        """The A/B verdict of candidate against baseline (None: no such A/B test)."""
        ...

    async def traffic(self, model: str, version: int) -> Evidence | None:
        """Whether the version is drained: weight 0, nothing in flight, no requests for a
        window (passed); None when it is not in the routing table at all."""
        ...


class RegistryStore(Protocol):
    """Durable registry state."""

    def load(self) -> RegistryState:
        """Everything, as of now."""
        ...

    def write(self, change: RegistryWrite) -> None:
        """Apply one change atomically."""
        ...

    def events(self, model: str) -> list[AuditEvent]:
        """A model's audit log, in order."""
        ...


class ModelRegistry(Protocol):
    """The model registry as the API uses it (the registry actor, over Ray)."""

    async def list_models(self) -> tuple[ModelView, ...]:
        """Every model, by name."""
        ...

    async def get_model(self, name: str) -> ModelView:
        """One model. Raises NotFound (`model_not_found`)."""
        ...

    async def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """The model's audit log. Raises NotFound (`model_not_found`)."""
        ...

    async def register(self, request: Registration, actor: str) -> ModelVersion:
        """Register a run's model as a new version (see `Registry.register`)."""
        ...

    async def promote(
        self, name: str, version: int, target: ModelStage, actor: str
    ) -> PromotionResult:
        """Move a version through the gates of the edge (see `Registry.promote`)."""
        ...

    async def approve(
        self, name: str, version: int, actor: str, comment: str
    ) -> tuple[Approval, bool]:
        """Record an approval bound to the version's digest (see `Registry.approve`)."""
        ...

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """Set or clear a model's own policy (see `Registry.set_policy`)."""
        ...


@dataclass(frozen=True)
class TrafficState:
    """What the traffic actor reloads when it starts."""

    tables: Mapping[str, RoutingTable]
    rollouts: Mapping[str, Rollout]
    stats: Mapping[str, Mapping[str, VariantStats]]
    p_values: Mapping[tuple[str, str, str], float]
    starts: Mapping[tuple[str, str], Mapping[str, VariantStats]]


class TrafficStore(Protocol):
    """Durable serving state: routing tables, rollouts, stats, predictions and feedback."""

    def load(self) -> TrafficState:
        """Tables, rollouts, stats and running p-values."""
        ...

    def save_table(
        self,
        table: RoutingTable | None,
        model: str,
        rollout: Rollout | None = None,
        clear_rollout: bool = False,
        start: Mapping[str, VariantStats] | None = None,
    ) -> None:
        """Store (None: delete) a model's table, rollout and experiment-start stats in one
        transaction."""
        ...

    def save_stats(self, stats: Mapping[str, Mapping[str, VariantStats]]) -> None:
        """Store the cumulative stats of every variant."""
        ...

    def save_p_value(self, key: tuple[str, str, str], p_value: float) -> None:
        """Store an A/B test's running p-value."""
        ...

    def add_refs(self, refs: Iterable[PredictionRef]) -> None:
        """Remember predictions for feedback."""
        ...

    def ref(self, request_id: str) -> PredictionRef | None:
        """A remembered prediction."""
        ...

    def feedback_value(self, request_id: str) -> tuple[bool, float | None]:
        """Whether feedback exists for a request, and its joined outcome (None: pending)."""
        ...

    def add_feedback(self, feedback: Feedback, value: float | None, at: float) -> None:
        """Store feedback, joined (with its outcome) or pending."""
        ...

    def pending_count(self) -> int:
        """How much feedback waits for its prediction."""
        ...

    def pending_feedback(self, request_ids: Iterable[str]) -> list[Feedback]:
        """Pending feedback for these requests."""
        ...

    def join_feedback(self, request_id: str, value: float) -> None:
        """Record the outcome of pending feedback."""
        ...


class ServingControl(Protocol):
    """Deployments and feedback, as the API uses them (the traffic actor, over Ray)."""

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """Deploy versions with a strategy. Raises NotFound, InvalidInput, Conflict."""
        ...

    async def undeploy(self, model: str, actor: str) -> None:
        """Remove the model's routing table. Raises NotFound (`not_deployed`)."""
        ...

    async def view(self, model: str) -> DeploymentView:
        """The deployment with live stats. Raises NotFound (`not_deployed`)."""
        ...

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to predictions; a status per item."""
        ...


class Background(Protocol):
    """Work an ingress replica runs beside requests (started and stopped with the app)."""

    async def start(self) -> None:
        """Begin."""
        ...

    async def stop(self) -> None:
        """Finish (flush what is buffered)."""
        ...


class TrainingLauncher(Protocol):
    """Jobs on the cluster (Ray's job submission)."""

    def submit(
        self, job_id: str, entrypoint: str, metadata: Mapping[str, str], env: Mapping[str, str]
    ) -> str:
        """Start a job running `entrypoint`; its id."""
        ...

    def get(self, job_id: str) -> JobRecord:
        """A job. Raises NotFound (`job_not_found`)."""
        ...

    def list(self) -> list[JobRecord]:
        """Every job the cluster knows, newest first."""
        ...

    def logs(self, job_id: str) -> str:
        """A job's log so far. Raises NotFound (`job_not_found`)."""
        ...

    def tail(self, job_id: str) -> AsyncIterator[str]:
        """A job's log as it is written, until the job ends."""
        ...

    def stop(self, job_id: str) -> bool:
        """Ask a job to stop; False if it had already ended."""
        ...


class JobRuns(Protocol):
    """The MLflow runs of jobs."""

    def find(self, job_id: str, experiment: str | None) -> JobRun | None:
        """The run a job logs to (None until it has started one); without the experiment
        (a job submitted with `ray job submit`), searched in every experiment."""
        ...


class FeatureStore(Protocol):
    """The feature store (Feast): catalog, online values, materialization."""

    def catalog(self) -> Catalog:
        """The repository as it stands, with freshness."""
        ...

    def online(
        self, entity_rows: Sequence[Mapping[str, Any]], features: Sequence[str]
    ) -> OnlineFeatures:
        """Online values of checked `view:feature` references for the rows."""
        ...

    def materialize(self, end: datetime | None = None) -> list[tuple[str, datetime, datetime]]:
        """Incremental materialization up to `end`; (view, start, end) per view."""
        ...


class MonitorStore(Protocol):
    """Durable monitoring state: policies, alerts, the latest drift per version, retrains."""

    def policies(self) -> dict[str, MonitoringPolicy]:
        """Every model's stored policy."""
        ...

    def save_policy(self, model: str, policy: MonitoringPolicy) -> None:
        """Store a model's policy."""
        ...

    def save_alert(self, alert: Alert) -> None:
        """Insert or update an alert."""
        ...

    def latest_alert(self, model: str, version: int) -> Alert | None:
        """A version's most recent alert (open or resolved)."""
        ...

    def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        """Alerts, newest first."""
        ...

    def save_drift(
        self, model: str, version: int, evaluated_at: float, body: dict[str, Any]
    ) -> None:
        """Store a version's latest drift evaluation."""
        ...

    def drift(self, model: str) -> dict[int, dict[str, Any]]:
        """The latest drift evaluation of each version of a model."""
        ...

    def add_retrain(self, model: str, job_id: str, alert_id: str, at: float) -> None:
        """Record a retraining job started by an alert."""
        ...

    def retrains(self, model: str) -> list[tuple[str, str, float]]:
        """(job id, alert id, submitted at) of a model's retraining jobs."""
        ...
