"""The traffic actor's state in the service database: routing tables, rollouts, serving
stats, prediction references, feedback and the A/B tests' running p-values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from app.adapters.state_database import state_engine
from app.core.canary import Rollout
from app.core.feedback import Feedback, PredictionRef
from app.core.routing import RoutingTable
from app.core.serving_codec import (
    rollout_as_dict,
    rollout_from_dict,
    stats_as_dict,
    stats_from_dict,
    table_as_dict,
    table_from_dict,
)
from app.core.serving_stats import VariantStats
from app.ports.serving import TrafficState

_metadata = sa.MetaData()

tables_table = sa.Table(
    "traffic_tables",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
rollouts_table = sa.Table(
    "traffic_rollouts",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
stats_table = sa.Table(
    "traffic_stats",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("variant", sa.String(128), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
refs_table = sa.Table(
    "prediction_refs",
    _metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("predictions", sa.Text, nullable=False),
)
feedback_table = sa.Table(
    "prediction_feedback",
    _metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("outcome", sa.Float, nullable=True),
    sa.Column("value", sa.Float, nullable=True),  # the joined outcome; null while pending
    sa.Column("at", sa.Float, nullable=False),
)
snapshots_table = sa.Table(
    "ab_snapshots",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("variant", sa.String(128), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
ab_table = sa.Table(
    "ab_tests",
    _metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("candidate", sa.String(128), primary_key=True),
    sa.Column("p_value", sa.Float, nullable=False),
)


class SqlTrafficStore:
    """`TrafficStore` over SQLAlchemy (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str) -> None:
        self._engine = state_engine(url, _metadata)

    def load(self) -> TrafficState:
        """Tables, rollouts, stats and running p-values."""
        with self._engine.connect() as conn:
            tables = {
                r.model: table_from_dict(json.loads(r.body))
                for r in conn.execute(sa.select(tables_table))
            }
            rollouts = {
                r.model: rollout_from_dict(json.loads(r.body))
                for r in conn.execute(sa.select(rollouts_table))
            }
            stats: dict[str, dict[str, VariantStats]] = {}
            for row in conn.execute(sa.select(stats_table)):
                stats.setdefault(row.model, {})[row.variant] = stats_from_dict(json.loads(row.body))
            p_values = {
                (r.model, r.experiment, r.candidate): r.p_value
                for r in conn.execute(sa.select(ab_table))
            }
            starts: dict[tuple[str, str], dict[str, VariantStats]] = {}
            for row in conn.execute(sa.select(snapshots_table)):
                starts.setdefault((row.model, row.experiment), {})[row.variant] = stats_from_dict(
                    json.loads(row.body)
                )
        return TrafficState(tables, rollouts, stats, p_values, starts)

    def save_table(
        self,
        table: RoutingTable | None,
        model: str,
        rollout: Rollout | None = None,
        clear_rollout: bool = False,
        start: Mapping[str, VariantStats] | None = None,
    ) -> None:
        """Store (or, with None, delete) a model's table, its rollout, and the stats at the
        start of its experiment, in one go."""
        with self._engine.begin() as conn:
            if table is not None and start is not None:
                for variant, value in start.items():
                    conn.execute(
                        sa.insert(snapshots_table).values(
                            model=model,
                            experiment=table.experiment,
                            variant=variant,
                            body=json.dumps(stats_as_dict(value)),
                        )
                    )
            conn.execute(sa.delete(tables_table).where(tables_table.c.model == model))
            if table is not None:
                conn.execute(
                    sa.insert(tables_table).values(
                        model=model, revision=table.revision, body=json.dumps(table_as_dict(table))
                    )
                )
            if rollout is not None or clear_rollout:
                conn.execute(sa.delete(rollouts_table).where(rollouts_table.c.model == model))
            if rollout is not None:
                conn.execute(
                    sa.insert(rollouts_table).values(
                        model=model, body=json.dumps(rollout_as_dict(rollout))
                    )
                )

    def save_stats(self, stats: Mapping[str, Mapping[str, VariantStats]]) -> None:
        """Store the cumulative stats of every variant."""
        with self._engine.begin() as conn:
            for model, variants in stats.items():
                for variant, value in variants.items():
                    where = sa.and_(stats_table.c.model == model, stats_table.c.variant == variant)
                    conn.execute(sa.delete(stats_table).where(where))
                    conn.execute(
                        sa.insert(stats_table).values(
                            model=model, variant=variant, body=json.dumps(stats_as_dict(value))
                        )
                    )

    def save_p_value(self, key: tuple[str, str, str], p_value: float) -> None:
        """Store an A/B test's running p-value."""
        model, experiment, candidate = key
        where = sa.and_(
            ab_table.c.model == model,
            ab_table.c.experiment == experiment,
            ab_table.c.candidate == candidate,
        )
        with self._engine.begin() as conn:
            conn.execute(sa.delete(ab_table).where(where))
            conn.execute(
                sa.insert(ab_table).values(
                    model=model, experiment=experiment, candidate=candidate, p_value=p_value
                )
            )

    def add_refs(self, refs: Iterable[PredictionRef]) -> None:
        """Remember predictions (a retried batch is ignored row by row)."""
        rows = [
            {
                "request_id": r.request_id,
                "model": r.model,
                "variant": r.variant,
                "version": r.version,
                "at": r.at,
                "predictions": json.dumps(list(r.predictions)),
            }
            for r in refs
        ]
        if not rows:
            return
        with self._engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(conn, refs_table), rows)

    def pending_count(self) -> int:
        """How much feedback waits for its prediction."""
        with self._engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(feedback_table)
                .where(feedback_table.c.value.is_(None))
            ).scalar()
        return int(count or 0)

    def ref(self, request_id: str) -> PredictionRef | None:
        """A remembered prediction."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(refs_table).where(refs_table.c.request_id == request_id)
            ).first()
        if row is None:
            return None
        return PredictionRef(
            row.request_id,
            row.model,
            row.variant,
            row.version,
            row.at,
            tuple(json.loads(row.predictions)),
        )

    def feedback_value(self, request_id: str) -> tuple[bool, float | None]:
        """Whether feedback exists for a request, and its joined outcome (None: pending)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(feedback_table.c.value).where(feedback_table.c.request_id == request_id)
            ).first()
        return (False, None) if row is None else (True, row.value)

    def add_feedback(self, feedback: Feedback, value: float | None, at: float) -> None:
        """Store feedback, joined (with its outcome) or pending."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(feedback_table).values(
                    request_id=feedback.request_id,
                    label=None if feedback.label is None else json.dumps(feedback.label),
                    outcome=feedback.outcome,
                    value=value,
                    at=at,
                )
            )

    def pending_feedback(self, request_ids: Iterable[str]) -> list[Feedback]:
        """Feedback that arrived before its prediction was known, for these requests."""
        ids = list(request_ids)
        if not ids:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(feedback_table).where(
                    sa.and_(feedback_table.c.request_id.in_(ids), feedback_table.c.value.is_(None))
                )
            )
            return [
                Feedback(r.request_id, None if r.label is None else json.loads(r.label), r.outcome)
                for r in rows
            ]

    def join_feedback(self, request_id: str, value: float) -> None:
        """Record the outcome of feedback that was pending."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(feedback_table)
                .where(feedback_table.c.request_id == request_id)
                .values(value=value)
            )

    def ping(self) -> None:
        """Touch the database."""
        with self._engine.connect() as conn:
            conn.execute(sa.select(1))


def _insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table) -> Any:
    """An INSERT that skips rows whose key exists (a flush retried after a failure)."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table).on_conflict_do_nothing()
    return sa.insert(table).prefix_with("IGNORE")  # MySQL
