"""Baseline: the service database as the release before migrations (0231c5a) made it.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

That release created each store's tables on first use (`metadata.create_all`), so a
database it made may hold only some of them: every table and index here is created only
when missing, and `state_database` stamps a database that holds them all instead.
Frozen: the stores' tables may change, this file does not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every table the release before migrations made.
RELEASE_TABLES = (
    "registry_models",
    "registry_versions",
    "registry_approvals",
    "registry_audit",
    "traffic_tables",
    "traffic_rollouts",
    "traffic_stats",
    "prediction_refs",
    "prediction_feedback",
    "ab_snapshots",
    "ab_tests",
    "monitoring_policies",
    "monitoring_alerts",
    "monitoring_drift",
    "monitoring_retrains",
)


def upgrade() -> None:
    _registry()
    _traffic()
    _feedback_and_ab_tests()
    _monitoring()


def downgrade() -> None:
    for table in reversed(RELEASE_TABLES):
        op.drop_table(table)  # drops its indexes with it


def _registry() -> None:
    op.create_table(
        "registry_models",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
        if_not_exists=True,
    )
    op.create_table(
        "registry_versions",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("semver", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("artifact_digest", sa.String(64), nullable=False),
        sa.Column("signature_digest", sa.String(64), nullable=False),
        sa.Column("metadata_digest", sa.String(64), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.String(40), nullable=False),
        sa.Column("registered_by", sa.String(256), nullable=False),
        sa.Column("stage_changed_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("model", "version"),
        if_not_exists=True,
    )
    op.create_table(
        "registry_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),  # SERIAL
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("approver", sa.String(256), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_registry_approvals_model", "registry_approvals", ["model"], if_not_exists=True
    )
    op.create_table(
        "registry_audit",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("model", "seq"),
        if_not_exists=True,
    )


def _traffic() -> None:
    op.create_table(
        "traffic_tables",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
        if_not_exists=True,
    )
    op.create_table(
        "traffic_rollouts",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
        if_not_exists=True,
    )
    op.create_table(
        "traffic_stats",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "variant"),
        if_not_exists=True,
    )


def _feedback_and_ab_tests() -> None:
    op.create_table(
        "prediction_refs",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("predictions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
        if_not_exists=True,
    )
    op.create_index("ix_prediction_refs_at", "prediction_refs", ["at"], if_not_exists=True)
    op.create_table(
        "prediction_feedback",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
        if_not_exists=True,
    )
    op.create_table(
        "ab_snapshots",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "experiment", "variant"),
        if_not_exists=True,
    )
    op.create_table(
        "ab_tests",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("candidate", sa.String(128), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model", "experiment", "candidate"),
        if_not_exists=True,
    )


def _monitoring() -> None:
    op.create_table(
        "monitoring_policies",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
        if_not_exists=True,
    )
    op.create_table(
        "monitoring_alerts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_monitoring_alerts_model", "monitoring_alerts", ["model"], if_not_exists=True
    )
    op.create_index(
        "ix_monitoring_alerts_opened_at", "monitoring_alerts", ["opened_at"], if_not_exists=True
    )
    op.create_table(
        "monitoring_drift",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("evaluated_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version"),
        if_not_exists=True,
    )
    op.create_table(
        "monitoring_retrains",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_monitoring_retrains_model", "monitoring_retrains", ["model"], if_not_exists=True
    )
