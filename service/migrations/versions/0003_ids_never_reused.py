"""Ids are never reused: SQLite tables with an ``id`` become AUTOINCREMENT.

Without AUTOINCREMENT SQLite gives a new row max(id) + 1, so deleting the newest job handed its
id, and every link to it, to the next job. SQLite cannot add AUTOINCREMENT to a table, so each
table is copied into a new one (Alembic's batch mode); the copy records the highest id present
in ``sqlite_sequence``, and ids count on from there. An id deleted before this upgrade left no
trace and may still be issued once more. PostgreSQL needs nothing: its SERIAL sequences never go
back.

A later batch migration of these tables must pass ``table_kwargs={"sqlite_autoincrement": True}``
again: SQLAlchemy does not reflect the option, so a plain copy would drop it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every table whose primary key is an ``id`` (service.models: ``IDS_NEVER_REUSED``).
TABLES: tuple[str, ...] = (
    "devices",
    "latency_tables",
    "jobs",
    "job_stages",
    "job_events",
    "subnets",
    "artifacts",
    "pareto_fronts",
)


def upgrade() -> None:
    _copy_tables(autoincrement=True)


def downgrade() -> None:
    _copy_tables(autoincrement=False)


def _copy_tables(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Dropping a table that others reference deletes their rows (ON DELETE CASCADE) while
    # foreign keys are on, and SQLite only turns them off outside a transaction.
    context = op.get_context()
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rows lost their parent while copying tables: {broken[:5]}")
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=ON")
