"""`TrainingJobs`: what is checked before a job is submitted, and what is submitted.

The launcher here is a fake of our own port; tests/integration/test_training.py runs the
same class over Ray's real job API."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.jobs import JobRecord, JobRun, JobState
from app.errors import DomainError, ErrorCode, InvalidInput, TooManyRequests
from app.jobs.spec import TrainingSpec
from app.services.training import TrainingJobs


class RecordingLauncher:
    """Keeps what would have been submitted."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, dict[str, str], dict[str, str]]] = []

    def submit(
        self, job_id: str, entrypoint: str, metadata: Mapping[str, str], env: Mapping[str, str]
    ) -> str:
        self.submitted.append((job_id, entrypoint, dict(metadata), dict(env)))
        return job_id

    def get(self, job_id: str) -> JobRecord:
        for submitted_id, _, metadata, _ in self.submitted:
            if submitted_id == job_id:
                return JobRecord(job_id, JobState.PENDING, None, datetime.now(UTC), None, metadata)
        raise AssertionError(job_id)

    def list(self) -> list[JobRecord]:
        return [self.get(job_id) for job_id, *_ in self.submitted]

    def logs(self, job_id: str) -> str:
        return ""

    async def tail(self, job_id: str) -> AsyncIterator[str]:
        yield ""

    def stop(self, job_id: str) -> bool:
        return True


class NoRuns:
    def find(self, job_id: str, experiment: str) -> JobRun | None:
        return None


def jobs(tmp_path: Path, launcher: RecordingLauncher, cpus: float = 2, gpus: float = 0) -> Any:
    return TrainingJobs(
        launcher,
        NoRuns(),
        registry=None,  # type: ignore[arg-type]  # training specs never ask it
        resources=lambda: {"CPU": cpus, "GPU": gpus},
        python="/opt/venv/bin/python",
        env={"ML_REGISTRY__ACTOR_NAME": "registry"},
        workdir=tmp_path,
    )


def spec(**overrides: Any) -> TrainingSpec:
    body: dict[str, Any] = {
        "experiment": "churn",
        "trainer": "mlp_classifier",
        "dataset": {"generate": {"rows": 1000}},
        "scaling": {"num_workers": 2},
        "register": {"model": "churn"},
    }
    body.update(overrides)
    return TrainingSpec.model_validate(body)


def refused(tmp_path: Path, training: TrainingSpec, **resources: float) -> InvalidInput:
    launcher = RecordingLauncher()
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(jobs(tmp_path, launcher, **resources).submit(training, "alice"))
    assert launcher.submitted == []  # nothing reached the cluster
    return caught.value


def fields(error: DomainError) -> list[str]:
    return [e.field for e in error.field_errors]


def test_a_good_spec_is_submitted_as_the_training_module_with_its_metadata(
    tmp_path: Path,
) -> None:
    launcher = RecordingLauncher()
    view = asyncio.run(jobs(tmp_path, launcher).submit(spec(), "alice"))
    ((job_id, entrypoint, metadata, env),) = launcher.submitted
    assert view.record.job_id == job_id and job_id.startswith("train-")
    argv = shlex.split(entrypoint)
    assert argv[:4] == ["/opt/venv/bin/python", "-m", "app.jobs.train", "--spec-json"]
    assert TrainingSpec.model_validate(json.loads(argv[4])) == spec()
    assert metadata == {
        "kind": "train",
        "experiment": "churn",
        "model": "churn",
        "submitted_by": "alice",
    }
    assert env == {"ML_REGISTRY__ACTOR_NAME": "registry"}


def test_a_tuning_spec_is_a_tune_job(tmp_path: Path) -> None:
    launcher = RecordingLauncher()
    tuning = spec(tune={"search_space": {"lr": {"loguniform": [0.001, 0.1]}}})
    view = asyncio.run(jobs(tmp_path, launcher).submit(tuning, "alice"))
    assert view.kind == "tune" and view.record.job_id.startswith("tune-")


def test_a_relative_dataset_path_is_resolved_against_the_workdir(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    launcher = RecordingLauncher()
    asyncio.run(jobs(tmp_path, launcher).submit(spec(dataset={"path": "data.parquet"}), "alice"))
    body = json.loads(shlex.split(launcher.submitted[0][1])[4])
    assert body["dataset"]["path"] == str(tmp_path / "data.parquet")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"trainer": "transformer"}, "trainer"),
        ({"trainer": "no_such_package.train:fit"}, "trainer"),
        ({"dataset": {"path": "missing.parquet"}}, "dataset.path"),
        ({"dataset": {"path": "/etc/passwd"}}, "dataset.path"),  # outside the workdir
        ({"dataset": {"path": "../outside.parquet"}}, "dataset.path"),
        ({"dataset": {"path": "file:///etc/passwd"}}, "dataset.path"),  # s3:// only
        ({"scaling": {"num_workers": 3}}, "scaling.num_workers"),
        ({"scaling": {"num_workers": 1, "use_gpu": True}}, "scaling.use_gpu"),
        ({"tune": {"search_space": {"lr": {"uniform": [1, 0]}}}}, "search_space.lr"),
        ({"tune": {"search_space": {"lr": {"normal": [0, 1]}}}}, "search_space.lr"),
        ({"tune": {"search_space": {"lr": {"choice": [0.1]}}, "cpus_per_trial": 4}}, "tune.cpus"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_submitted(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    error = refused(tmp_path, spec(**overrides))
    assert any(f.startswith(field) for f in fields(error)), fields(error)


def test_gpus_the_cluster_has_are_accepted(tmp_path: Path) -> None:
    launcher = RecordingLauncher()
    gpu = spec(scaling={"num_workers": 2, "use_gpu": True, "cpus_per_worker": 1})
    asyncio.run(jobs(tmp_path, launcher, cpus=4, gpus=2).submit(gpu, "alice"))
    assert len(launcher.submitted) == 1


@pytest.mark.parametrize(
    "scaling", [{"num_workers": -2}, {"num_workers": 0}, {"cpus_per_worker": -1}]
)
def test_impossible_scaling_does_not_parse(scaling: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(scaling=scaling)


def test_twenty_submissions_at_once_over_the_limit_are_refused_with_a_reason(
    tmp_path: Path,
) -> None:
    launcher = RecordingLauncher()
    training = TrainingJobs(
        launcher,
        NoRuns(),
        registry=None,  # type: ignore[arg-type]
        resources=lambda: {"CPU": 2},
        python="python",
        env={},
        workdir=tmp_path,
        max_active=3,
    )

    async def twenty() -> list[Any]:
        calls = [training.submit(spec(), f"user-{i}") for i in range(20)]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(twenty())
    accepted = [a for a in answers if not isinstance(a, BaseException)]
    refusals = [a for a in answers if isinstance(a, TooManyRequests)]
    assert (len(accepted), len(refusals)) == (3, 17)  # every submission answered: none lost
    assert sorted(v.record.job_id for v in accepted) == sorted(j for j, *_ in launcher.submitted)
    assert all(r.code is ErrorCode.TOO_MANY_JOBS for r in refusals)
    assert "3 jobs are pending or running (the limit is 3)" in str(refusals[0])


def test_a_path_cannot_leave_the_workdir_through_a_symbolic_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.parquet").write_bytes(b"PAR1")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "link").symlink_to(outside)
    error = refused(workdir, spec(dataset={"path": "link/secret.parquet"}))
    assert fields(error) == ["dataset.path"]
    assert "inside the service's working directory" in str(error)


def test_more_workers_than_training_rows_is_refused_before_any_worker_starts() -> None:
    """The built-in trainers' equal shards: 3 rows cannot feed 4 workers (each would train
    on nothing and register an untrained model)."""
    import pyarrow as pa

    from app.adapters import ray_train

    table = pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    with pytest.raises(ValueError, match="3 training rows cannot be shared by 4 workers"):
        ray_train.fit(
            ray_train.mlp_train_loop,
            {},
            {},
            num_workers=4,
            use_gpu=False,
            resources_per_worker={"CPU": 1},
            storage=(None, "/nowhere"),
            name="refused",
            max_failures=0,
            tables=(table, table),
        )
