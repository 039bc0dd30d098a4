"""Schema migrations as an explicit start step (``python -m service`` runs it, import never)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.db import (
    DatabaseFault,
    check_database,
    create_db_engine,
    database_fault,
    database_location,
    sqlite_file_fault,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Seconds of ``PRAGMA quick_check`` at start: some GB of SQLite file (a larger one in part).
START_CHECK_BUDGET_S = 5.0


class DatabaseStartError(Exception):
    """The database cannot be used; the message is one line: which, what is wrong, what to do."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` (creating the SQLite file if needed)."""
    engine = create_db_engine(database_url)  # creates the SQLite directory before Alembic runs
    engine.dispose()
    command.upgrade(alembic_config(database_url), revision)


def prepare_database(database_url: str) -> None:
    """The start step: check that the database can be used (the file, its lock, its pages),
    then migrate it; a ``DatabaseStartError`` saying why not. The checks run before the
    migrations import the models (and with them torch), so a bad file is reported at once."""
    fault = sqlite_file_fault(database_url)
    if fault is None:
        fault = _open_and_check(database_url)
    if fault is None:
        try:
            upgrade_database(database_url)
        except SQLAlchemyError as exc:
            fault = database_fault(exc)
            if fault is None:
                raise  # a migration's own mistake: its traceback is what a developer needs
    if fault is not None:
        raise DatabaseStartError(fault.start_up_line(database_location(database_url)))


def _open_and_check(database_url: str) -> DatabaseFault | None:
    try:
        engine = create_db_engine(database_url)  # makes a SQLite file's directory
    except OSError as exc:
        return DatabaseFault(
            "cannot be created",
            f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc),
            "point NAS_DATABASE_URL at a path in a directory the service's user may create",
        )
    try:
        return check_database(engine, budget_s=START_CHECK_BUDGET_S, write=True)
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise RuntimeError("no Alembic revision found in service/migrations/versions")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
