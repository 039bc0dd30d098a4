"""Engine and session setup for SQLite (embedded default) and PostgreSQL.

Engines are made by the app's lifespan or by a test, never at import.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Named constraints: SQLite can only alter a table by copying it (Alembic's batch mode), and
# that needs every constraint to have a stable name that models and migrations agree on.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic's autogenerate compares against it."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite stores no offset and hands back naive values; normalising here means the API and
    the lease arithmetic of the dispatcher never compare naive with aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime: naive datetime; use service.db.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a job writes; foreign keys are off by default in SQLite.
    # pysqlite's own BEGIN is switched off so that _sqlite_begin can take the write lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer committed in between (the busy timeout does not apply);
    # taking the write lock at BEGIN makes concurrent writers queue instead. A connection
    # marked ``read_only`` (the API's pure reads) takes no lock: under WAL it reads a snapshot
    # and never waits for writers or other readers. An AUTOCOMMIT connection (a migration's
    # ``PRAGMA foreign_keys``, a no-op inside a transaction) asked for none at all.
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN" if options.get("read_only", False) else "BEGIN IMMEDIATE")


#: Seconds a SQLite connection waits for another process's lock before "database is locked"
#: (unless the URL sets ``timeout``): a file held by another process is a 503 or a start-up
#: error after this long, not a hang.
SQLITE_BUSY_TIMEOUT_S = 5.0
#: Seconds to wait for a new PostgreSQL connection (unless the URL sets ``connect_timeout``):
#: with the server down or unreachable a request is a quick 503, not a hang.
CONNECT_TIMEOUT_S = 5


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's directory is created, PostgreSQL connections are
    checked before use so a restarted server does not hand out dead connections."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False}
        if "timeout" not in parsed.query:
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
        engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = (
        {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    )
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


# --- an unusable database, in words ------------------------------------------------------


@dataclass(frozen=True)
class DatabaseFault:
    """Why the database cannot be used, for a start-up error, ``/health``, a 503 and a log."""

    problem: str  # "is corrupt", "is locked by another process"
    cause: str  # the database's own words ("database disk image is malformed"), or ""
    remedy: str  # what the operator does about it

    def __str__(self) -> str:
        return f"database {self.problem}" + (f" ({self.cause})" if self.cause else "")

    def start_up_line(self, where: str) -> str:
        cause = f" ({self.cause})" if self.cause else ""
        return f"database {where} {self.problem}{cause}; {self.remedy}"


_CORRUPT = (
    "is corrupt",
    "restore it from a backup, or move it aside (sqlite3's .recover may save its rows) and "
    "start on a new file",
)
_LOCKED = (
    "is locked by another process",
    "stop the process that holds it (a long transaction, another service on the same file) "
    "or try again",
)
_ACCESS = "let the service's user read and write the file and its directory"
#: SQLite's primary result codes (extended ones, ``SQLITE_IOERR_SHORT_READ``, fold into them)
#: that make the file unusable; other errors (a constraint, a query's mistake) are no fault.
_SQLITE_FAULTS = {
    "SQLITE_NOTADB": (
        "is not a SQLite database",
        "move it aside or point NAS_DATABASE_URL elsewhere",
    ),
    "SQLITE_CORRUPT": _CORRUPT,
    "SQLITE_BUSY": _LOCKED,
    "SQLITE_LOCKED": _LOCKED,
    "SQLITE_READONLY": (
        "is read-only",
        f"{_ACCESS} (SQLite keeps -wal and -shm files beside it)",
    ),
    "SQLITE_CANTOPEN": ("cannot be opened", f"make it a file and {_ACCESS}"),
    "SQLITE_PERM": ("cannot be opened", _ACCESS),
    "SQLITE_FULL": ("is on a full disk", "free space on its file system"),
    "SQLITE_IOERR": ("cannot be read or written", "check the disk and its file system"),
}


def _first_line(exc: DBAPIError) -> str:
    """The driver's message without SQLAlchemy's SQL and link; its first line."""
    error = exc.orig if exc.orig is not None else exc
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__


def database_fault(exc: BaseException) -> DatabaseFault | None:
    """What ``exc`` says about the database (corrupt, locked, unreachable), or None when it says
    nothing about it (a constraint violated, a mistake in a query: a bug, not an outage)."""
    if not isinstance(exc, DBAPIError):
        return None
    name = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(name, str):
        known = _SQLITE_FAULTS.get("_".join(name.split("_")[:2]))
        return DatabaseFault(known[0], _first_line(exc), known[1]) if known else None
    if isinstance(exc, OperationalError):
        return DatabaseFault(
            "is unreachable",
            _first_line(exc),
            "check that the server runs and that NAS_DATABASE_URL names it",
        )
    return None


def database_location(url: str) -> str:
    """The SQLite file as the URL names it; any other database's URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


def sqlite_file_fault(url: str) -> DatabaseFault | None:
    """What keeps the service from using a SQLite file that the file system can tell before
    SQLite opens it (SQLite says "unable to open database file" to all of them)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if parsed.query.get("uri"):
        return None  # a file: URI, not a path
    path = Path(database).expanduser()
    if path.is_dir():
        return DatabaseFault(
            "is a directory, not a file", "", "remove it or point NAS_DATABASE_URL at a file"
        )
    user = f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return DatabaseFault(
            "is not readable and writable by the service's user",
            f"{user}; the file is {_owner_and_mode(path)}",
            "chown or chmod it, or run the service as its owner",
        )
    ancestor = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not ancestor.is_dir():
        return DatabaseFault(
            "cannot be created",
            f"{ancestor} is not a directory",
            "point NAS_DATABASE_URL at a path in a directory",
        )
    # SQLite creates the file and, in WAL mode, its -wal and -shm files beside it; once they
    # exist it can do without writing the directory.
    created = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    if not os.access(ancestor, os.W_OK | os.X_OK) and not all(f.exists() for f in created):
        return DatabaseFault(
            "is in a directory the service's user cannot write",
            f"{user}; {ancestor} is {_owner_and_mode(ancestor)}",
            "make the directory writable: SQLite creates the file and its -wal and -shm "
            "files there",
        )
    return None


def _owner_and_mode(path: Path) -> str:
    info = path.stat()
    return f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}"


def _quick_check(connection: Connection, budget_s: float) -> str | None:
    """The first problem ``PRAGMA quick_check`` finds within ``budget_s``, or None: none found
    (in the whole file, or in the part it read before the time ran out)."""
    dbapi_connection: Any = connection.connection.dbapi_connection
    # Pages this pooled connection read before the file changed under it would hide the damage.
    connection.exec_driver_sql("PRAGMA shrink_memory")
    deadline = time.monotonic() + budget_s
    dbapi_connection.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        rows = connection.exec_driver_sql("PRAGMA quick_check(1)").scalars().all()
    except OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorname", None) == "SQLITE_INTERRUPT":
            return None
        raise
    finally:
        dbapi_connection.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return None
    found = " ".join(str(row) for row in rows).replace("*** in database main ***", "")
    return "quick_check: " + " ".join(found.split())


def check_database(engine: Engine, *, budget_s: float, write: bool = False) -> DatabaseFault | None:
    """Read the data as a request would, in bounded time and without the write lock: on
    SQLite, ``PRAGMA quick_check`` for at most ``budget_s`` (about 150 MB of file in 0.2 s);
    elsewhere a ``SELECT 1``. With ``write``, first take the write lock and give it back (on
    SQLite, waiting at most the busy timeout for another process that holds it).

    A fault, or None; an error that says nothing about the database is raised."""
    finding = None
    try:
        if write:
            with engine.begin():  # SQLite: BEGIN IMMEDIATE (see _sqlite_begin)
                pass
        with engine.execution_options(read_only=True).connect() as connection:
            if connection.dialect.name == "sqlite":
                finding = _quick_check(connection, budget_s)
            else:
                connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        fault = database_fault(exc)
        if fault is None:
            raise
        return fault
    return DatabaseFault(_CORRUPT[0], finding, _CORRUPT[1]) if finding else None
