"""The registry's SQL store, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.adapters.registry_store import SqlRegistryStore
from app.core.audit import EventType, next_event, verify
from app.core.gates import Approval, MetricRule, PromotionPolicy
from app.core.lifecycle import ModelStage
from app.core.registry import Lineage, ModelVersion, RegisteredModel, RegistryWrite
from app.core.semver import ArtifactFacts, SemVer
from tests.integration.postgres_server import postgres_server

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean schema per test
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def version(n: int, stage: ModelStage = ModelStage.DEVELOPMENT) -> ModelVersion:
    return ModelVersion(
        model="churn",
        version=n,
        semver=SemVer(1, n, 0),
        stage=stage,
        facts=ArtifactFacts("sig", f"art{n}", "meta"),
        metrics={"accuracy": 0.9 + n / 100},
        lineage=Lineage(
            run_id=f"run{n}",
            experiment_id="1",
            datasets=({"name": "d", "digest": "x", "context": "training"},),
            code_version="abc",
            parent_version=n - 1 or None,
            artifact_digest=f"art{n}",
            source_uri=f"models:/m-{n}",
        ),
        description="",
        tags={"team": "growth"},
        registered_at=T0,
        registered_by="eng",
        stage_changed_at=T0,
    )


def test_round_trip_upsert_and_order(url: str) -> None:
    store = SqlRegistryStore(url)
    assert store.load().models == {}
    policy = PromotionPolicy(metric_rules=(MetricRule("accuracy", min=0.8),), required_approvals=2)
    model = RegisteredModel("churn", "Churn", T0, "eng", policy)
    first = next_event(None, "churn", T0, "eng", EventType.VERSION_REGISTERED, 1, {"v": 1})
    store.write(RegistryWrite(model=model, versions=(version(1), version(2)), events=(first,)))

    moved = replace(
        version(1), stage=ModelStage.STAGING, stage_changed_at=T0 + timedelta(seconds=1)
    )
    approval = Approval(1, "art1", "alice", T0 + timedelta(seconds=2), "ok")
    second = next_event(
        first,
        "churn",
        T0 + timedelta(seconds=1),
        "eng",
        EventType.STAGE_CHANGED,
        1,
        {"from": "development", "to": "staging"},
    )
    other = next_event(None, "fraud", T0, "eng", EventType.MODEL_CREATED, None, {})
    store.write(
        RegistryWrite(versions=(moved,), approvals=(("churn", approval),), events=(second, other))
    )

    state = SqlRegistryStore(url).load()  # a fresh process would see this
    assert state.models == {"churn": model}
    assert state.versions["churn"] == {1: moved, 2: version(2)}
    assert state.approvals == {"churn": (approval,)}
    assert state.tails["churn"] == second and state.tails["fraud"] == other
    assert store.events("churn") == [first, second]
    assert verify(store.events("churn")).valid


def test_a_failed_write_leaves_nothing_behind(url: str) -> None:
    store = SqlRegistryStore(url)
    first = next_event(None, "churn", T0, "eng", EventType.VERSION_REGISTERED, 1, {})
    store.write(RegistryWrite(versions=(version(1),), events=(first,)))
    moved = replace(version(1), stage=ModelStage.STAGING)
    with pytest.raises(sa.exc.IntegrityError):
        store.write(RegistryWrite(versions=(moved,), events=(first,)))  # seq 1 again
    assert store.load().versions["churn"][1].stage is ModelStage.DEVELOPMENT
    assert store.events("churn") == [first]


def test_an_altered_row_fails_verification(url: str) -> None:
    store = SqlRegistryStore(url)
    events = [next_event(None, "churn", T0, "eng", EventType.MODEL_CREATED, None, {})]
    for i in range(1, 4):
        events.append(
            next_event(
                events[-1],
                "churn",
                T0 + timedelta(minutes=i),
                "eng",
                EventType.VERSION_REGISTERED,
                i,
                {"semver": f"1.{i}.0"},
            )
        )
    store.write(RegistryWrite(events=tuple(events)))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'UPDATE registry_audit SET payload = \'{"semver": "9.9.9"}\' '
                "WHERE model = 'churn' AND seq = 3"
            )
        )
    engine.dispose()
    result = verify(store.events("churn"))
    assert not result.valid and result.broken_at == 3
