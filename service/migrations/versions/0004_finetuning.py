"""The finetuning stage: a job may be in state ``finetuning`` and have a stage of that name, and
a subnet keeps its fine-tuned val accuracy and how it was had (the recipe, epochs, trials).

``jobs.state`` and ``job_stages.name`` are checked against the stage order, so their CHECKs are
replaced with ones that allow ``finetuning`` (between ``searching`` and ``exporting``). On
SQLite a CHECK cannot be altered: the tables are copied (Alembic's batch mode), keeping
AUTOINCREMENT (migration 0003) and with foreign keys off while a parent table is replaced.

Names: 0002 passed names that the metadata's naming convention prefixed once more, so every
CHECK in a migrated database is ``ck_<table>_ck_<table>_<name>``; this revision names its own
the same way, so that all of them stay alike.

Downgrade refuses while a job is in state ``finetuning`` (let it finish, or cancel it), drops
the ``finetuning`` stage rows (the older code knows no such stage) and the two columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TERMINAL = "'succeeded', 'failed', 'cancelled'"
_OLD_STAGES = "'training', 'building_predictor', 'searching', 'exporting'"
_NEW_STAGES = "'training', 'building_predictor', 'searching', 'finetuning', 'exporting'"


def _ck(table: str, name: str) -> str:
    """A CHECK's name as 0002 left them (``ck_<table>_ck_<table>_<name>``), final: not passed
    through the naming convention again."""
    return op.f(f"ck_{table}_ck_{table}_{name}")


@contextmanager
def _foreign_keys_off() -> Iterator[None]:
    """On SQLite, dropping a table that others reference deletes their rows (ON DELETE
    CASCADE) while foreign keys are on, and they can only be turned off outside a
    transaction; checked again before they are turned back on. Nothing elsewhere."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    context = op.get_context()
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    yield
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rows lost their parent while copying tables: {broken[:5]}")
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=ON")


def _batch(table: str) -> AbstractContextManager[BatchOperations]:
    # SQLAlchemy does not reflect AUTOINCREMENT: a copy made without it would drop it (0003).
    return op.batch_alter_table(table, table_kwargs={"sqlite_autoincrement": True})


def _set_stages(stages: str) -> None:
    with _batch("jobs") as batch:
        batch.drop_constraint(_ck("jobs", "state"), type_="check")
        batch.create_check_constraint(
            _ck("jobs", "state"), sa.text(f"state IN ('queued', {stages}, {_TERMINAL})")
        )
    with _batch("job_stages") as batch:
        batch.drop_constraint(_ck("job_stages", "name"), type_="check")
        batch.create_check_constraint(_ck("job_stages", "name"), sa.text(f"name IN ({stages})"))


def upgrade() -> None:
    with _foreign_keys_off():
        _set_stages(_NEW_STAGES)
        with _batch("subnets") as batch:
            batch.add_column(sa.Column("finetuned_accuracy", sa.Float(), nullable=True))
            batch.add_column(sa.Column("finetune", sa.JSON(), nullable=True))
            batch.create_check_constraint(
                _ck("subnets", "finetuned_accuracy"),
                sa.text("finetuned_accuracy BETWEEN 0 AND 100"),
            )


def downgrade() -> None:
    bind = op.get_bind()
    running = bind.execute(sa.text("SELECT id FROM jobs WHERE state = 'finetuning'")).scalars()
    ids = sorted(running.all())
    if ids:
        raise RuntimeError(
            f"jobs {ids[:10]} are in state 'finetuning', which revision 0003 does not know; "
            "let them finish (or cancel them), then downgrade"
        )
    op.execute("DELETE FROM job_stages WHERE name = 'finetuning'")
    with _foreign_keys_off():
        with _batch("subnets") as batch:
            batch.drop_constraint(_ck("subnets", "finetuned_accuracy"), type_="check")
            batch.drop_column("finetune")
            batch.drop_column("finetuned_accuracy")
        _set_stages(_OLD_STAGES)
