"""The composition root: the one place that builds adapters, use cases and the actors'
parts from settings and hands them in through constructors.

Each function runs where its product lives (Ray and Serve call them inside the actor or
replica process, from `deployments.builder`): nothing built here crosses a process
boundary except the actor and deployment handles the builder passes in (`Peers`).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.core.routing import Backend
from app.jobs.spec import JobEnvironment
from app.logs import configure_logging
from app.ports.health import HealthProbe
from app.services.container import Services
from app.services.features import Features
from app.services.training import TrainingJobs
from app.settings import AuthSettings, Settings

# The project's checkout (the built workbench is found from here).
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Peers:
    """The handles the ingress talks to (passed by the builder: nothing is looked up by
    name). `monitor` and `triton` are None when that part is off."""

    registry: Any
    traffic: Any
    model_server: Any
    monitor: Any = None
    triton: Any = None


def job_environment(settings: Settings) -> JobEnvironment:
    """Where jobs find the service's stores (the registry actor hands it out)."""
    return JobEnvironment(
        tracking_uri=settings.mlflow.tracking_uri,
        artifact_root=settings.mlflow.artifact_root,
        storage=settings.storage,
        placement=settings.placement,
        feature_repo=str(settings.features.repo_dir),
        feature_dir=str(settings.features.data_dir),
        feature_config=settings.features.config_file,
    )


# -- actors ----------------------------------------------------------------------------


def registry_parts(settings: Settings) -> dict[str, Any]:
    """The registry actor's constructor arguments."""
    from app.adapters.mlflow_registry import MlflowModelCatalog
    from app.adapters.model_validation import RayModelValidator
    from app.adapters.registry_store import SqlRegistryStore

    configure_logging(settings.log_level)
    config = settings.registry
    return {
        "config": config,
        "store": SqlRegistryStore(settings.state.database_url),
        "catalog": MlflowModelCatalog(settings.mlflow.tracking_uri),
        "validator": RayModelValidator(
            settings.mlflow.tracking_uri, config.validation_num_cpus, config.validation_timeout_s
        ),
        "jobs": job_environment(settings),
    }


def traffic_parts(settings: Settings, registry: Any) -> dict[str, Any]:
    """The traffic actor's constructor arguments (`registry`: the registry actor)."""
    from app.adapters.registry_actor_client import ActorModelRegistry
    from app.adapters.serve_metrics import QualityGauges
    from app.adapters.traffic_store import SqlTrafficStore

    configure_logging(settings.log_level)
    return {
        "config": settings.serving,
        "store": SqlTrafficStore(settings.state.database_url),
        "registry": ActorModelRegistry(registry),
        "gauges": QualityGauges(),
    }


def monitor_parts(settings: Settings, registry: Any) -> dict[str, Any]:
    """The monitor actor's constructor arguments (`registry`: the registry actor, which
    its retraining jobs check models with)."""
    from app.adapters.drift_references import StoredReferences
    from app.adapters.monitor_store import SqlMonitorStore
    from app.adapters.prediction_log import PredictionLogReader
    from app.adapters.registry_actor_client import ActorModelRegistry
    from app.adapters.serve_metrics import DriftGauges
    from app.adapters.storage import open_storage
    from app.adapters.webhooks import WebhookDelivery
    from app.core.webhook_targets import networks

    configure_logging(settings.log_level)
    config = settings.monitoring
    secret = config.webhook_secret.get_secret_value() if config.webhook_secret else None
    storage = open_storage(settings.storage)
    return {
        "config": config,
        "store": SqlMonitorStore(settings.state.database_url),
        "references": StoredReferences(settings.mlflow.tracking_uri, storage),
        "predictions": PredictionLogReader(storage),
        "jobs": training_jobs(settings, ActorModelRegistry(registry)),
        "delivery": WebhookDelivery(
            secret,
            config.webhook_timeout_s,
            config.webhook_attempts,
            allowed=networks(config.webhook_allowed_networks),
        ),
        "gauges": DriftGauges(),
    }


def triton_parts(settings: Settings) -> dict[str, Any]:
    """The Triton server deployment's constructor arguments (its repository is the
    storage's `triton/models`, as a directory on the replica's node)."""
    from app.adapters.storage import open_storage

    storage = open_storage(settings.storage)
    return {
        "config": settings.serving.triton,
        "tracking_uri": settings.mlflow.tracking_uri,
        "repository": storage.local_directory("triton/models"),
        "log_level": settings.log_level,
        "storage": storage,
    }


# -- use cases -------------------------------------------------------------------------


def training_jobs(settings: Settings, registry: Any, features: Features | None = None) -> Any:
    """The training use case: Ray's job API of the cluster the caller runs in (or
    `training.dashboard_url`), the MLflow store, this environment's interpreter."""
    import ray

    from app.adapters.mlflow_job_runs import MlflowJobRuns
    from app.adapters.ray_jobs import RayJobsLauncher
    from app.services.training import code_version

    env = {
        "ML_REGISTRY__ACTOR_NAME": settings.registry.actor_name,
        "ML_REGISTRY__NAMESPACE": settings.registry.namespace,
        "ML_CODE_VERSION": code_version(settings.training.workdir),
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",  # bars bury the log lines that matter
    }
    return TrainingJobs(
        RayJobsLauncher(settings.training.dashboard_url),
        MlflowJobRuns(settings.mlflow.tracking_uri),
        registry,
        ray.cluster_resources,
        sys.executable,
        {k: v for k, v in env.items() if v},
        settings.training.workdir,
        features,
        settings.training.max_active_jobs,
    )


def feature_store(settings: Settings, storage: Any = None) -> Any:
    """The Feast feature store of these settings (`FeastFeatures`; imports Feast), its
    offline data in the file storage (`storage`, else the settings' own)."""
    from app.adapters.feast_store import FeastFeatures, OfflineFiles
    from app.adapters.storage import open_storage

    features = settings.features
    offline = OfflineFiles(storage or open_storage(settings.storage), settings.storage.cache_dir)
    return FeastFeatures(
        features.repo_dir,
        features.data_dir,
        features.config_file,
        offline=offline,
        online_timeout_s=features.online_timeout_s,
    )


def features(settings: Settings, store: Any = None) -> Features | None:
    """The features use case over `store` (default: the settings' Feast store; None: off),
    its Feast catalog warmed up off the request path (Feast's import and first registry
    read take seconds)."""
    if not settings.features.enabled:
        return None
    store = store if store is not None else feature_store(settings)
    threading.Thread(target=store.catalog, name="feast-warmup", daemon=True).start()
    return Features(store, settings.features.catalog_ttl_s)


def jwt_verifier(auth: AuthSettings) -> Any:
    """The verifier of the OIDC issuer's JWTs (None: not configured)."""
    if auth.oidc is None:
        return None
    from app.adapters.oidc import OidcVerifier

    return OidcVerifier(auth.oidc)


def api_tokens(database_url: str) -> Any:
    """The tokens made through the API, in the service database (`ApiTokens`)."""
    from app.adapters.token_store import SqlTokenStore
    from app.services.tokens import ApiTokens

    return ApiTokens(SqlTokenStore(database_url))


def token_book(auth: AuthSettings, database_url: str) -> Any:
    """Who may call: the configured tokens, the stored ones (made through the API, the
    bootstrap admin token) and the OIDC issuer's JWTs."""
    from app.core.access import TokenBook

    entries = ((t.name, t.roles, t.sha256) for t in auth.tokens)
    return TokenBook.of(entries, jwt_verifier(auth), api_tokens(database_url).principal_for)


def ingress_app(settings: Settings, peers: Peers) -> FastAPI:
    """The API of one ingress replica: every use case over the peers' handles."""
    from app.api.factory import create_api

    configure_logging(settings.log_level)
    # Serve's proxy assigns and echoes x-request-id; the app reuses it.
    return create_api(
        ingress_services(settings, peers),
        api=settings.api,
        tokens=settings.auth.tokens,
        mlflow_prefix=settings.mlflow.ui_prefix,
        echo_request_id=False,
        jwt_verifier=jwt_verifier(settings.auth),
        workbench_dir=workbench_dir(settings.api.workbench_dir),
    )


def workbench_dir(setting: str) -> Path | None:
    """Where the built workbench is: `setting`, relative to the project's root."""
    if not setting:
        return None
    return PROJECT_ROOT / setting


def ingress_services(settings: Settings, peers: Peers) -> Services:
    """The use cases of an ingress replica."""
    from app.adapters.health_probes import (
        ArtifactStoreProbe,
        FeatureOnlineStoreProbe,
        PingProbe,
        RayClusterProbe,
        StorageProbe,
    )
    from app.adapters.idempotency_claims import SqlIdempotencyClaims
    from app.adapters.mlflow_signatures import MlflowSignatures
    from app.adapters.mlflow_tracking import MlflowExperimentTracker
    from app.adapters.registry_actor_client import ActorModelRegistry
    from app.adapters.serve_invoker import BackendInvoker, ServeModelInvoker, ServeTritonBackend
    from app.adapters.serve_metrics import ObservedRecorder
    from app.adapters.serving_evidence import TrafficServingEvidence
    from app.adapters.state_database import state_ping
    from app.adapters.storage import open_storage
    from app.adapters.traffic_client import BufferedRecorder, RoutingCache, TrafficClient
    from app.adapters.vllm_backend import VllmBackend
    from app.services.backends import Backends
    from app.services.deployments import Deployments
    from app.services.features import FeatureInputs
    from app.services.lifecycle import Promotions
    from app.services.llm import LlmGateway
    from app.services.prediction import Predictor
    from deployments.llm_launch import launch

    mlflow, serving = settings.mlflow, settings.serving
    storage = open_storage(settings.storage)
    claims = SqlIdempotencyClaims(settings.state.database_url)
    tracker = MlflowExperimentTracker(mlflow.tracking_uri, mlflow.artifact_root, claims)
    registry = ActorModelRegistry(peers.registry)
    traffic = TrafficClient(peers.traffic)
    tables = RoutingCache(peers.traffic)
    recorder = BufferedRecorder(peers.traffic, serving.stats_flush_s)
    invokers = {Backend.RAY: ServeModelInvoker(peers.model_server, serving.retries)}
    if peers.triton is not None:
        invokers[Backend.TRITON] = ServeModelInvoker(peers.triton, serving.retries)
    llm = VllmBackend(serving.llm, mlflow.tracking_uri, storage, launch)
    triton = ServeTritonBackend(peers.triton) if peers.triton is not None else None
    backends = Backends(triton, llm, tables, retire_after_s=serving.drain_window_s)
    observed = ObservedRecorder(recorder)
    signatures = MlflowSignatures(mlflow.tracking_uri)
    feast = feature_store(settings, storage) if settings.features.enabled else None
    feature_use_case = features(settings, feast)
    monitoring, log, monitor_background = _monitoring(settings, peers, traffic, storage)
    predictor = Predictor(
        tables,
        BackendInvoker(invokers),
        observed,
        serving.max_rows_per_request,
        feature_inputs=FeatureInputs(feature_use_case, registry) if feature_use_case else None,
        log=log,
        signatures=signatures,
    )
    probes: tuple[HealthProbe, ...] = (
        RayClusterProbe(),
        PingProbe("mlflow_store", tracker.ping),
        PingProbe("state_store", state_ping(settings.state.database_url)),
        ArtifactStoreProbe(mlflow.artifact_root),
        StorageProbe(storage),
        PingProbe("registry", registry.ping),
        PingProbe("traffic", traffic.ping),
        *([PingProbe("monitor", monitoring.ping)] if monitoring is not None else []),
        *([FeatureOnlineStoreProbe(feast.ping)] if feast is not None else []),
    )
    gateway = LlmGateway(tables, llm, observed)
    return Services(
        tracker=tracker,
        probes=probes,
        registry=registry,
        signatures=signatures,
        promotions=Promotions(registry, TrafficServingEvidence(peers.traffic), traffic),
        deployments=Deployments(registry, traffic, backends, feature_use_case),
        predictor=predictor,
        jobs=training_jobs(settings, registry, feature_use_case),
        features=feature_use_case,
        monitoring=monitoring,
        llm=gateway,
        diagnostics=_diagnostics(settings, peers, registry, traffic, feature_use_case, gateway),
        tokens=api_tokens(settings.state.database_url),
        background=(tables, recorder, *monitor_background),
    )


def _diagnostics(
    settings: Settings,
    peers: Peers,
    registry: Any,
    traffic: Any,
    feature_use_case: Any,
    gateway: Any,
) -> Any:
    """Diagnoses from the ingress's own clients; the assistant when one is named."""
    from app.services.diagnostics import Assistant, Diagnostics

    config = settings.diagnostics
    assistant = (
        Assistant(gateway, config.assistant_model, config.max_tokens)
        if config.assistant_model
        else None
    )
    return Diagnostics(
        registry,
        traffic,
        _monitor_client(peers),
        feature_use_case,
        assistant,
        settings.api.base_path,
        config.default_window_s,
    )


def _monitor_client(peers: Peers) -> Any:
    """The monitor actor's client (None: monitoring off)."""
    from app.adapters.monitor_client import MonitorClient

    return MonitorClient(peers.monitor) if peers.monitor is not None else None


def _node() -> str:
    """This process's Ray node, shortened (empty outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else ""


def _monitoring(settings: Settings, peers: Peers, traffic: Any, storage: Any) -> tuple[Any, ...]:
    """The monitoring use case, this replica's prediction log, and what runs beside them
    (None, None, () when monitoring is off)."""
    if peers.monitor is None:
        return None, None, ()
    from app.adapters.drift_report import MatplotlibDriftReports
    from app.adapters.monitor_client import MonitorClient, SampleRates
    from app.adapters.prediction_log import PredictionLog, PredictionLogReader
    from app.core.webhook_targets import networks
    from app.services.monitoring import Monitoring

    config = settings.monitoring
    rates = SampleRates(peers.monitor, config.sample_rate, config.policy_poll_s)
    log = PredictionLog(
        storage,
        rates,
        flush_s=config.log_flush_s,
        batch_rows=config.log_batch_rows,
        writer=_node(),
    )
    monitoring = Monitoring(
        MonitorClient(peers.monitor),
        traffic,
        log,
        PredictionLogReader(storage),
        MatplotlibDriftReports(),
        networks(config.webhook_allowed_networks),
    )
    return monitoring, log, (rates, log)
