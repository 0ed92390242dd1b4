"""The monitor actor's state in the service database: policies, alerts, the latest drift
of each version and the retraining jobs alerts started."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from app.adapters.state_database import state_engine
from app.core.monitoring import (
    Alert,
    AlertState,
    MonitoringPolicy,
    policy_as_dict,
    policy_from_dict,
)

_metadata = sa.MetaData()

policies_table = sa.Table(
    "monitoring_policies",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
alerts_table = sa.Table(
    "monitoring_alerts",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("opened_at", sa.Float, nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
)
drift_table = sa.Table(
    "monitoring_drift",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("evaluated_at", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
retrains_table = sa.Table(
    "monitoring_retrains",
    _metadata,
    sa.Column("job_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


class SqlMonitorStore:
    """`MonitorStore` over SQLAlchemy (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str) -> None:
        self._engine = state_engine(url, _metadata)

    def policies(self) -> dict[str, MonitoringPolicy]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(policies_table)).all()
        return {r.model: policy_from_dict(json.loads(r.body)) for r in rows}

    def save_policy(self, model: str, policy: MonitoringPolicy) -> None:
        body = json.dumps(policy_as_dict(policy))
        with self._engine.begin() as conn:
            conn.execute(sa.delete(policies_table).where(policies_table.c.model == model))
            conn.execute(sa.insert(policies_table).values(model=model, body=body))

    def save_alert(self, alert: Alert) -> None:
        values = {
            "model": alert.model,
            "version": alert.version,
            "state": alert.state.value,
            "opened_at": alert.opened_at,
            "body": json.dumps(alert.to_dict()),
        }
        with self._engine.begin() as conn:
            updated = conn.execute(
                sa.update(alerts_table).where(alerts_table.c.id == alert.id).values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(sa.insert(alerts_table).values(id=alert.id, **values))

    def latest_alert(self, model: str, version: int) -> Alert | None:
        query = (
            sa.select(alerts_table.c.body)
            .where(alerts_table.c.model == model, alerts_table.c.version == version)
            .order_by(alerts_table.c.opened_at.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            body = conn.execute(query).scalar()
        return Alert.from_dict(json.loads(body)) if body else None

    def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        query = sa.select(alerts_table.c.body).order_by(
            alerts_table.c.opened_at.desc(), alerts_table.c.id
        )
        if model is not None:
            query = query.where(alerts_table.c.model == model)
        if state is not None:
            query = query.where(alerts_table.c.state == state.value)
        with self._engine.connect() as conn:
            rows = conn.execute(query.offset(offset).limit(limit)).scalars().all()
        return [Alert.from_dict(json.loads(body)) for body in rows]

    def save_drift(
        self, model: str, version: int, evaluated_at: float, body: dict[str, Any]
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(drift_table).where(
                    drift_table.c.model == model, drift_table.c.version == version
                )
            )
            conn.execute(
                sa.insert(drift_table).values(
                    model=model, version=version, evaluated_at=evaluated_at, body=json.dumps(body)
                )
            )

    def drift(self, model: str) -> dict[int, dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(drift_table).where(drift_table.c.model == model)).all()
        return {r.version: json.loads(r.body) for r in rows}

    def add_retrain(self, model: str, job_id: str, alert_id: str, at: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(retrains_table).values(
                    job_id=job_id, model=model, alert_id=alert_id, at=at
                )
            )

    def retrains(self, model: str) -> list[tuple[str, str, float]]:
        query = sa.select(retrains_table).where(retrains_table.c.model == model)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(retrains_table.c.at)).all()
        return [(r.job_id, r.alert_id, r.at) for r in rows]

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
