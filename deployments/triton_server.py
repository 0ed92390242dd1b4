"""The `triton` backend: a Serve deployment that owns a Triton Inference Server.

Each replica starts its own `tritonserver` from the Triton environment (`.venv-triton`,
made by `scripts/setup-triton`), or connects to an external Triton (`serving.triton.url`).
A version is exported (TorchScript, generated `config.pbtxt`) into the model repository
and loaded into Triton the first time a replica is asked for it (Serve's model
multiplexing sends later requests for it to the same replica). Requests go to Triton
over gRPC with `tritonclient`.

The server process is the replica's: it dies with the replica (parent-death signal), and
when it dies first, the replica's health check fails so Serve replaces the replica; until
then requests fail at once with 503 instead of waiting on a dead server.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from app.adapters.triton_export import ExportedModel, RepositoryOptions, export_version
from app.core.model_io import RowBlock, plain_rows
from app.errors import DomainError, ErrorCode, InvalidInput, Unavailable, UpstreamFailed, first_line
from app.logs import configure_logging
from app.ports.storage import Storage
from app.settings import TritonSettings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
REPOSITORY_KEY = "triton/models"  # the model repository's prefix in the file storage


class TritonServer:
    """Serves exported versions through Triton.

    Args:
        config: the Triton backend's settings.
        tracking_uri: the MLflow store the versions are exported from.
        repository: the model repository on this node (the storage's `triton/models`).
        log_level: the service log level.
        storage: the file storage `repository` is a node-local copy of (S3): each export
            is also written there, so replicas on other nodes start with it.
    """

    def __init__(
        self,
        config: TritonSettings,
        *,
        tracking_uri: str,
        repository: Path,
        log_level: str,
        storage: Storage | None = None,
    ) -> None:
        configure_logging(log_level)
        self._config = config
        self._tracking_uri = tracking_uri
        self._storage = storage
        self._repository = repository
        self._repository.mkdir(parents=True, exist_ok=True)
        self._options = RepositoryOptions(
            native_backend=self._config.native_backend,
            instance_kind=self._config.instance_kind,
            instances=self._config.instances,
            max_batch_size=self._config.max_batch_size,
            max_queue_delay_us=self._config.max_queue_delay_us,
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log_tail: deque[str] = deque(maxlen=40)
        self._missing: str | None = None
        self._metrics_url: str | None = None
        self._failed: str | None = None
        self._client: Any = None
        self._workdir: str | None = None
        if self._config.url:
            self._url = self._config.url
        else:
            try:
                self._url = self._start_server()
            except Exception as exc:  # the health check fails: Serve retries the replica
                self._failed = f"tritonserver did not start: {first_line(exc)}"
                log.error(self._failed)
                self._url = ""

    # -- the server process -------------------------------------------------------------

    def _start_server(self) -> str:
        env_dir = self._config.environment
        binary = env_dir / "tritonserver" / "bin" / "tritonserver"
        if not binary.exists():
            self._missing = (
                f"Triton is not set up here ({binary} is missing): run scripts/setup-triton, "
                "or set serving.triton.url to an external Triton."
            )
            log.warning(self._missing)
            return ""
        grpc_port, metrics_port = _free_ports(2)
        libs = [str(env_dir / "tritonserver" / "libs"), _python_libdir(env_dir)]
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]),
            "PATH": f"{env_dir / 'bin'}:{os.environ.get('PATH', '')}",
        }
        env.pop("PYTHONPATH", None)  # the stub runs in the Triton environment, not ours
        command = [
            str(binary),
            f"--model-repository={self._repository}",
            f"--backend-directory={env_dir / 'tritonserver' / 'backends'}",
            "--model-control-mode=explicit",
            # Only this replica talks to its server: loopback only, no HTTP endpoint (the
            # repository API would let anyone who reaches it load code).
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--allow-http=false",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        ]
        self._workdir = tempfile.mkdtemp(prefix="triton-")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            command,
            env=env,
            cwd=self._workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the parent is the replica
        )
        self._metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        url = f"127.0.0.1:{grpc_port}"
        self._wait_until_live(url)
        log.info("tritonserver pid %d serving on %s", self._process.pid, url)
        return url

    def _wait_until_live(self, url: str) -> None:
        import threading

        import tritonclient.grpc as grpcclient

        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout

        def drain() -> None:
            for line in iter(stdout.readline, b""):
                self._log_tail.append(line.decode(errors="replace").rstrip())

        threading.Thread(target=drain, name="tritonserver-log", daemon=True).start()
        client = grpcclient.InferenceServerClient(url)
        deadline = time.monotonic() + self._config.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with {self._process.returncode}: "
                    + " | ".join(list(self._log_tail)[-8:])
                )
            try:
                if client.is_server_live(client_timeout=1.0):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.2)
        self._process.terminate()
        raise RuntimeError(f"tritonserver did not start in {self._config.start_timeout_s:g} s")

    def _alive(self) -> None:
        """Fail fast (503) when there is no server to call."""
        if self._missing or self._failed:
            raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, self._missing or self._failed or "")
        if self._process is not None and self._process.poll() is not None:
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "The Triton server of this replica stopped; Serve is replacing the replica. "
                "Retry shortly.",
            )

    def _aio(self) -> Any:
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(self._url)
        return self._client

    # -- what the service calls ---------------------------------------------------------

    async def load(self, model_id: str) -> ExportedModel:
        """Export `"<model>/<version>"` if needed and load it into Triton (Serve caches
        the result per replica).

        Raises:
            InvalidInput: the version cannot run on Triton (field `backend`).
            Unavailable: no Triton, or it failed to load the model.
        """
        self._alive()
        name, _, version = model_id.rpartition("/")
        try:
            exported = await asyncio.to_thread(
                export_version,
                self._tracking_uri,
                name,
                int(version),
                self._repository,
                self._options,
            )
            await asyncio.to_thread(self._publish, exported.triton_name)
        except DomainError:
            raise
        except Exception as exc:  # the MLflow store, the disk
            log.exception("exporting %s failed", model_id)
            raise Unavailable(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Version {version} of {name!r} could not be exported: {first_line(exc)}",
                model=name,
                version=version,
            ) from None
        try:
            await self._aio().load_model(exported.triton_name)
        except Exception as exc:
            self._alive()
            raise Unavailable(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Triton did not load version {version} of {name!r}: {first_line(exc)}",
                model=name,
                version=version,
            ) from None
        log.info("loaded %s into Triton as %s", model_id, exported.triton_name)
        return exported

    def _publish(self, triton_name: str) -> None:
        """Write an export's files to the storage (an S3 one; a local storage holds the
        repository itself), those not already there."""
        if self._storage is None or "://" not in self._storage.root:
            return
        prefix = f"{REPOSITORY_KEY}/{triton_name}"
        stored = {f.key for f in self._storage.files(prefix)}
        # config.pbtxt last: a stored export without it is partial (and is redone)
        paths = sorted(
            (self._repository / triton_name).rglob("*"), key=lambda p: (p.name == "config.pbtxt", p)
        )
        for path in paths:
            key = f"{REPOSITORY_KEY}/{path.relative_to(self._repository).as_posix()}"
            if path.is_file() and key not in stored:
                self._storage.write_bytes(key, path.read_bytes())

    async def prepare(self, model_id: str) -> dict[str, Any]:
        """Export and load a version ahead of traffic (the deploy endpoint calls this)."""
        exported = await self.load(model_id)
        return {"triton_name": exported.triton_name, "features": exported.features}

    async def predict(self, model_id: str, block: RowBlock) -> list[Any]:
        """Predictions for one request's rows, by Triton (which batches concurrent ones).

        Raises:
            InvalidInput: the rows do not fit the model's inputs.
            Unavailable: Triton is down or did not answer in time (503, fast).
            UpstreamFailed: Triton failed on the input.
        """
        self._alive()
        model = await self.load(model_id)
        try:
            array = np.asarray(plain_rows(block, model.columns), dtype=np.float32)
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput.for_field(
                "inputs", f"not numeric rows of the model's features: {exc}"
            ) from None
        if array.ndim != 2 or array.shape[1] != model.features:
            raise InvalidInput.for_field(
                "inputs", f"each row must have the model's {model.features} features"
            )
        size = self._config.max_batch_size  # Triton refuses larger requests: split them
        parts = await asyncio.gather(
            *(self._infer(model, array[i : i + size]) for i in range(0, len(array), size))
        )
        output = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return _like_mlflow(output, tabular=model.columns is not None)

    async def _infer(self, model: ExportedModel, array: np.ndarray, retry: bool = True) -> Any:
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        tensor = grpcclient.InferInput("INPUT__0", list(array.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        try:
            result = await self._aio().infer(
                model.triton_name,
                [tensor],
                outputs=[grpcclient.InferRequestedOutput("OUTPUT__0")],
                client_timeout=self._config.request_timeout_s,
            )
        except InferenceServerException as exc:
            self._alive()
            text = f"{exc.status() or ''} {exc}"
            if retry and ("not found" in text or "unknown model" in text or "not ready" in text):
                # an external Triton restarted (explicit model control: it came back empty)
                await self._aio().load_model(model.triton_name)
                return await self._infer(model, array, retry=False)
            if "UNAVAILABLE" in text or "DEADLINE" in text or "Deadline" in text:
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE, f"Triton did not answer: {first_line(exc)}"
                ) from None
            log.warning("Triton failed on %s: %s", model.triton_name, exc)
            raise UpstreamFailed(
                ErrorCode.PREDICTION_FAILED,
                f"Triton failed on this input for {model.triton_name}: {first_line(exc)}",
                model=model.triton_name,
            ) from None
        return result.as_numpy("OUTPUT__0")

    async def metrics(self) -> str:
        """Triton's own Prometheus metrics (its metrics port)."""
        import httpx

        self._alive()
        if self._metrics_url is None:
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "An external Triton's metrics are on its own metrics port.",
            )
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(self._metrics_url)).text

    def server_pid(self) -> int | None:
        """The replica's tritonserver process (tests kill it)."""
        return self._process.pid if self._process is not None else None

    def check_health(self) -> None:
        """Serve's health check: the Triton server must be alive and live."""
        if self._missing:
            return  # nothing to replace: every request says how to set Triton up
        if self._failed:
            raise RuntimeError(self._failed)
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {self._process.returncode}")
        import tritonclient.grpc as grpcclient

        if not grpcclient.InferenceServerClient(self._url).is_server_live(client_timeout=2.0):
            raise RuntimeError("tritonserver is not live")

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        workdir = getattr(self, "_workdir", None)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _like_mlflow(output: np.ndarray, *, tabular: bool) -> list[Any]:
    """The JSON MLflow's PyTorch flavor gives for the same output: a DataFrame (records,
    or values for one column) for a tabular input, else the array's nested lists."""
    from app.core.model_io import to_jsonable

    if tabular:
        import pandas as pd

        frame = pd.DataFrame(output.reshape(len(output), -1) if output.ndim > 2 else output)
        return to_jsonable(frame)
    return to_jsonable(output)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _python_libdir(env_dir: Path) -> str:
    """The directory of libpython for the Triton environment's interpreter (its Python
    backend stub links to it; Debian's system libpython would be the wrong one)."""
    marker = env_dir / "tritonserver" / "python-libdir"
    if marker.exists():
        return marker.read_text().strip()
    import sysconfig

    return str(sysconfig.get_config_var("LIBDIR") or Path(sys.base_prefix) / "lib")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
