"""`TrainingLauncher` over Ray's job submission API (the dashboard's REST API)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

from app.core.jobs import JobRecord, JobState
from app.errors import ErrorCode, NotFound, Unavailable

log = logging.getLogger(__name__)

AGENT_WAIT_S = 30.0  # how long a submission waits for the job agent of a fresh cluster
# Ray's job client sets no timeout on its HTTP calls: a dashboard that stops answering (a
# cluster saturated by jobs) would hold the request for good. Each call gets this long.
CALL_TIMEOUT_S = 20.0

_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.STOPPED,
}


class RayJobsLauncher:
    """Submits and follows Ray jobs.

    Args:
        dashboard_url: the cluster's dashboard; None finds the cluster this process runs in
            (the service's own, as inside an ingress replica).
    """

    def __init__(self, dashboard_url: str | None = None) -> None:
        self._address = dashboard_url
        self._lock = threading.Lock()
        self._client: Any = None
        # the calls run here, so that a caller can stop waiting for one that hangs
        self._calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ray-jobs")

    def submit(
        self, job_id: str, entrypoint: str, metadata: Mapping[str, str], env: Mapping[str, str]
    ) -> str:
        """See `TrainingLauncher.submit`. Right after the cluster starts, its job agent may
        not be up yet: the submission (idempotent by its id) is retried for a while."""

        def submit(client: Any) -> str:
            deadline = time.monotonic() + AGENT_WAIT_S
            while True:
                try:
                    return str(
                        client.submit_job(
                            entrypoint=entrypoint,
                            submission_id=job_id,
                            metadata=dict(metadata),
                            runtime_env={"env_vars": dict(env)},
                        )
                    )
                except RuntimeError as exc:
                    if "No available agent" not in str(exc) or time.monotonic() > deadline:
                        raise
                    log.info("the cluster's job agent is not up yet; retrying job %s", job_id)
                    time.sleep(1)

        submitted: str = self._call(submit, timeout_s=AGENT_WAIT_S + CALL_TIMEOUT_S)
        log.info("submitted job %s", submitted)
        return submitted

    def get(self, job_id: str) -> JobRecord:
        """See `TrainingLauncher.get`."""
        return _record(self._call(lambda c: c.get_job_info(job_id), job_id))

    def list(self) -> list[JobRecord]:
        """See `TrainingLauncher.list`."""
        jobs = [_record(info) for info in self._call(lambda c: c.list_jobs()) if info.submission_id]
        return sorted(
            jobs, key=lambda j: j.started_at or datetime.min.replace(tzinfo=UTC), reverse=True
        )

    def logs(self, job_id: str) -> str:
        """See `TrainingLauncher.logs`."""
        text: str = self._call(lambda c: c.get_job_logs(job_id), job_id)
        return text

    async def tail(self, job_id: str) -> AsyncIterator[str]:
        """See `TrainingLauncher.tail`."""
        self.get(job_id)
        async for chunk in self._connect().tail_job_logs(job_id):
            yield chunk

    def stop(self, job_id: str) -> bool:
        """See `TrainingLauncher.stop`."""
        stopped: bool = self._call(lambda c: c.stop_job(job_id), job_id)
        return stopped

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                self._client = JobSubmissionClient(self._address)
            return self._client

    def _call(
        self, action: Any, job_id: str | None = None, timeout_s: float = CALL_TIMEOUT_S
    ) -> Any:
        call = self._calls.submit(lambda: action(self._connect()))
        try:
            return call.result(timeout=timeout_s)
        except FutureTimeout:
            log.error("Ray job API call did not answer within %.0f s", timeout_s)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"The cluster's job service did not answer within {timeout_s:.0f} s; retry "
                "shortly.",
            ) from None
        except RuntimeError as exc:
            if job_id is not None and "does not exist" in str(exc):
                raise NotFound(
                    ErrorCode.JOB_NOT_FOUND, f"No job {job_id!r}.", job_id=job_id
                ) from None
            log.exception("Ray job API call failed")
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "The cluster's job service is unavailable; retry shortly.",
            ) from None
        except ConnectionError:
            log.exception("Ray job API unreachable")
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "The cluster's job service is unavailable; retry shortly.",
            ) from None


def _record(info: Any) -> JobRecord:
    def when(ms: int | None) -> datetime | None:
        return datetime.fromtimestamp(ms / 1000, UTC) if ms else None

    return JobRecord(
        job_id=info.submission_id,
        state=_STATES.get(str(info.status).split(".")[-1], JobState.PENDING),
        message=info.message,
        started_at=when(info.start_time),
        ended_at=when(info.end_time),
        metadata=dict(info.metadata or {}),
    )
