"""Jobs, their stages and event log; artifacts, subnets, latencies, Pareto fronts; devices and
their latency tables.

Types are spelled out here (``sa.DateTime(timezone=True)`` rather than the models' UTC type
decorator) so that this revision stays as it is when the models change later.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STAGES = "'training', 'building_predictor', 'searching', 'exporting'"
_TERMINAL = "'succeeded', 'failed', 'cancelled'"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["jobs.id"], name=f"fk_{table}_job_id_jobs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "devices",
        _id(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("accelerator", sa.String(8), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("runtime IN ('torch', 'onnxruntime')", name="ck_devices_runtime"),
        sa.CheckConstraint("accelerator IN ('cpu', 'cuda')", name="ck_devices_accelerator"),
        sa.CheckConstraint("dtype IN ('float32', 'float16', 'bfloat16')", name="ck_devices_dtype"),
        sa.CheckConstraint("batch_size >= 1 AND threads >= 1", name="ck_devices_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
    )
    op.create_table(
        "latency_tables",
        _id(),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("revision >= 1", name="ck_latency_tables_revision"),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_latency_tables_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_latency_tables"),
        sa.UniqueConstraint("device_id", "sha256", name="uq_latency_tables_device_id_sha256"),
        sa.UniqueConstraint(
            "device_id",
            "space",
            "preset",
            "revision",
            name="uq_latency_tables_device_id_space_preset_revision",
        ),
    )
    op.create_table(
        "jobs",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ray_actor", sa.String(128), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _timestamp("heartbeat_at", nullable=True),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        _timestamp("cancel_requested_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            f"state IN ('queued', {_STAGES}, {_TERMINAL})",
            name="ck_jobs_state",
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name="ck_jobs_progress"),
        sa.CheckConstraint("attempt >= 0", name="ck_jobs_attempt"),
        sa.CheckConstraint(
            f"(state IN ({_TERMINAL})) = (finished_at IS NOT NULL)", name="ck_jobs_finished_at"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    )
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
    op.create_table(
        "job_stages",
        _id(),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.CheckConstraint(f"name IN ({_STAGES})", name="ck_job_stages_name"),
        sa.CheckConstraint(
            "state IN ('running', 'interrupted', 'succeeded', 'failed', 'cancelled')",
            name="ck_job_stages_state",
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name="ck_job_stages_progress"),
        _job_fk("job_stages"),
        sa.PrimaryKeyConstraint("id", name="pk_job_stages"),
        sa.UniqueConstraint("job_id", "name", name="uq_job_stages_job_id_name"),
    )
    op.create_table(
        "job_events",
        _id(),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("key", sa.String(64), nullable=True),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name="ck_job_events_level"),
        sa.CheckConstraint(
            "kind IN ('state', 'stage', 'log', 'metrics', 'artifact')", name="ck_job_events_kind"
        ),
        _job_fk("job_events"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.UniqueConstraint("job_id", "key", name="uq_job_events_job_id_key"),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])
    op.create_table(
        "subnets",
        _id(),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("arch_id", sa.String(128), nullable=False),
        sa.Column("arch", sa.JSON(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("macs", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("predicted_accuracy", sa.Float(), nullable=True),
        sa.Column("measured_accuracy", sa.Float(), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint("macs >= 0 AND params >= 0", name="ck_subnets_complexity"),
        sa.CheckConstraint("resolution > 0", name="ck_subnets_resolution"),
        sa.CheckConstraint(
            "predicted_accuracy BETWEEN 0 AND 100", name="ck_subnets_predicted_accuracy"
        ),
        sa.CheckConstraint(
            "measured_accuracy BETWEEN 0 AND 100", name="ck_subnets_measured_accuracy"
        ),
        _job_fk("subnets"),
        sa.PrimaryKeyConstraint("id", name="pk_subnets"),
        sa.UniqueConstraint("job_id", "arch_id", name="uq_subnets_job_id_arch_id"),
    )
    op.create_table(
        "subnet_latencies",
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("predicted_ms", sa.Float(), nullable=True),
        sa.Column("measured_ms", sa.Float(), nullable=True),
        sa.CheckConstraint("predicted_ms >= 0", name="ck_subnet_latencies_predicted_ms"),
        sa.CheckConstraint("measured_ms >= 0", name="ck_subnet_latencies_measured_ms"),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
            name="fk_subnet_latencies_subnet_id_subnets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subnet_id", "device", name="pk_subnet_latencies"),
    )
    op.create_table(
        "artifacts",
        _id(),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_artifacts_size_bytes"),
        _job_fk("artifacts"),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
            name="fk_artifacts_subnet_id_subnets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("path", name="uq_artifacts_path"),
    )
    op.create_index("ix_artifacts_job_id", "artifacts", ["job_id"])
    op.create_table(
        "pareto_fronts",
        _id(),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=True),
        _timestamp("created_at"),
        _job_fk("pareto_fronts"),
        sa.PrimaryKeyConstraint("id", name="pk_pareto_fronts"),
        sa.UniqueConstraint("job_id", "device", name="uq_pareto_fronts_job_id_device"),
    )
    op.create_table(
        "pareto_members",
        sa.Column("front_id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint("position >= 0", name="ck_pareto_members_position"),
        sa.ForeignKeyConstraint(
            ["front_id"],
            ["pareto_fronts.id"],
            name="fk_pareto_members_front_id_pareto_fronts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
            name="fk_pareto_members_subnet_id_subnets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("front_id", "subnet_id", name="pk_pareto_members"),
        sa.UniqueConstraint("front_id", "position", name="uq_pareto_members_front_id_position"),
    )


def downgrade() -> None:
    for table in (
        "pareto_members",
        "pareto_fronts",
        "artifacts",
        "subnet_latencies",
        "subnets",
        "job_events",
        "job_stages",
        "jobs",
        "latency_tables",
        "devices",
    ):
        op.drop_table(table)
