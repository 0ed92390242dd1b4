"""The registry's state in the service database (SQLite by default, PostgreSQL by URL).

Four tables: models, versions, approvals and the audit log. Every registry command is
one transaction, so a crash leaves either all of a change or none of it. Timestamps are
stored as ISO 8601 text so that what the audit chain hashed is read back to the
microsecond.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.adapters.state_database import state_engine
from app.core.audit import AuditEvent, EventType
from app.core.gates import Approval
from app.core.lifecycle import ModelStage
from app.core.policy_codec import policy_as_dict, policy_from_dict
from app.core.registry import (
    Lineage,
    ModelVersion,
    RegisteredModel,
    RegistryState,
    RegistryWrite,
)
from app.core.semver import ArtifactFacts, SemVer

_metadata = sa.MetaData()

models_table = sa.Table(
    "registry_models",
    _metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("policy", sa.Text, nullable=True),
)
versions_table = sa.Table(
    "registry_versions",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("semver", sa.String(32), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("signature_digest", sa.String(64), nullable=False),
    sa.Column("metadata_digest", sa.String(64), nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("lineage", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("registered_at", sa.String(40), nullable=False),
    sa.Column("registered_by", sa.String(256), nullable=False),
    sa.Column("stage_changed_at", sa.String(40), nullable=False),
)
approvals_table = sa.Table(
    "registry_approvals",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("approver", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
)
audit_table = sa.Table(
    "registry_audit",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


class SqlRegistryStore:
    """`RegistryStore` over SQLAlchemy.

    Args:
        url: SQLAlchemy database URL (`sqlite:///...`, `postgresql://...`).
    """

    def __init__(self, url: str) -> None:
        self._engine = state_engine(url, _metadata)

    def load(self) -> RegistryState:
        """Everything, as of now."""
        with self._engine.connect() as conn:
            models = {r.name: _model(r) for r in conn.execute(sa.select(models_table))}
            versions: dict[str, dict[int, ModelVersion]] = defaultdict(dict)
            for row in conn.execute(sa.select(versions_table)):
                versions[row.model][row.version] = _version(row)
            approvals: dict[str, list[Approval]] = defaultdict(list)
            query = sa.select(approvals_table).order_by(approvals_table.c.id)
            for row in conn.execute(query):
                approvals[row.model].append(_approval(row))
            tails = {row.model: _event(row) for row in conn.execute(_tails_query())}
        return RegistryState(
            models=models,
            versions={m: dict(v) for m, v in versions.items()},
            approvals={m: tuple(a) for m, a in approvals.items()},
            tails=tails,
        )

    def write(self, change: RegistryWrite) -> None:
        """Apply one change atomically."""
        with self._engine.begin() as conn:
            if change.model is not None:
                _upsert(conn, models_table, {"name": change.model.name}, _model_row(change.model))
            for version in change.versions:
                keys = {"model": version.model, "version": version.version}
                _upsert(conn, versions_table, keys, _version_row(version))
            for model, approval in change.approvals:
                conn.execute(sa.insert(approvals_table).values(_approval_row(model, approval)))
            for event in change.events:
                conn.execute(sa.insert(audit_table).values(_event_row(event)))

    def events(self, model: str) -> list[AuditEvent]:
        """A model's audit log, in order."""
        query = (
            sa.select(audit_table).where(audit_table.c.model == model).order_by(audit_table.c.seq)
        )
        with self._engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def ping(self) -> None:
        """Touch the database."""
        with self._engine.connect() as conn:
            conn.execute(sa.select(1))


def _tails_query() -> sa.Select[Any]:
    last = (
        sa.select(audit_table.c.model, sa.func.max(audit_table.c.seq).label("seq"))
        .group_by(audit_table.c.model)
        .subquery()
    )
    return sa.select(audit_table).join(
        last, sa.and_(audit_table.c.model == last.c.model, audit_table.c.seq == last.c.seq)
    )


def _upsert(
    conn: sa.Connection, table: sa.Table, keys: Mapping[str, Any], row: Mapping[str, Any]
) -> None:
    where = sa.and_(*(table.c[k] == v for k, v in keys.items()))
    updated = conn.execute(sa.update(table).where(where).values(row))
    if updated.rowcount == 0:
        conn.execute(sa.insert(table).values(row))


def _model_row(model: RegisteredModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "description": model.description,
        "created_at": model.created_at.isoformat(),
        "created_by": model.created_by,
        "policy": json.dumps(policy_as_dict(model.policy)) if model.policy else None,
    }


def _model(row: Any) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        description=row.description,
        created_at=datetime.fromisoformat(row.created_at),
        created_by=row.created_by,
        policy=policy_from_dict(json.loads(row.policy)) if row.policy else None,
    )


def _version_row(v: ModelVersion) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "semver": str(v.semver),
        "stage": v.stage.value,
        "artifact_digest": v.facts.artifact_digest,
        "signature_digest": v.facts.signature_digest,
        "metadata_digest": v.facts.metadata_digest,
        "metrics": json.dumps(dict(v.metrics)),
        "lineage": json.dumps(v.lineage.as_dict()),
        "description": v.description,
        "tags": json.dumps(dict(v.tags)),
        "registered_at": v.registered_at.isoformat(),
        "registered_by": v.registered_by,
        "stage_changed_at": v.stage_changed_at.isoformat(),
    }


def _version(row: Any) -> ModelVersion:
    lineage = json.loads(row.lineage)
    lineage["datasets"] = tuple(lineage.get("datasets", ()))
    return ModelVersion(
        model=row.model,
        version=row.version,
        semver=SemVer.parse(row.semver),
        stage=ModelStage(row.stage),
        facts=ArtifactFacts(row.signature_digest, row.artifact_digest, row.metadata_digest),
        metrics=json.loads(row.metrics),
        lineage=Lineage(**lineage),
        description=row.description,
        tags=json.loads(row.tags),
        registered_at=datetime.fromisoformat(row.registered_at),
        registered_by=row.registered_by,
        stage_changed_at=datetime.fromisoformat(row.stage_changed_at),
    )


def _approval_row(model: str, a: Approval) -> dict[str, Any]:
    return {
        "model": model,
        "version": a.version,
        "digest": a.digest,
        "approver": a.approver,
        "comment": a.comment,
        "at": a.at.isoformat(),
    }


def _approval(row: Any) -> Approval:
    return Approval(
        version=row.version,
        digest=row.digest,
        approver=row.approver,
        at=datetime.fromisoformat(row.at),
        comment=row.comment,
    )


def _event_row(e: AuditEvent) -> dict[str, Any]:
    return {
        "model": e.model,
        "seq": e.seq,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "type": e.type.value,
        "version": e.version,
        "payload": json.dumps(e.payload, sort_keys=True),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        model=row.model,
        seq=row.seq,
        at=datetime.fromisoformat(row.at),
        actor=row.actor,
        type=EventType(row.type),
        version=row.version,
        payload=json.loads(row.payload),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
