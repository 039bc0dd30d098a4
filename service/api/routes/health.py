"""Liveness and readiness of the service."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from nas import __version__
from service.api.deps import EngineDep
from service.api.schemas import HealthPublic
from service.db import check_database, database_fault
from service.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])

#: Seconds each ``/health`` spends reading pages (``PRAGMA quick_check``): a SQLite file of
#: about 150 MB is read whole, a larger one in part; the probe stays cheap either way.
HEALTH_CHECK_BUDGET_S = 0.25


def _database_state(engine: Engine) -> tuple[str | None, str | None]:
    """The schema revision, and why the database cannot be used (None when it can)."""
    try:
        # The pages, read without the write lock; then the revision, with it (a file that
        # another process holds is unavailable after the busy timeout, not ok).
        fault = check_database(engine, budget_s=HEALTH_CHECK_BUDGET_S)
        return (None, str(fault)) if fault else (current_revision(engine), None)
    except SQLAlchemyError as exc:
        fault = database_fault(exc)
        return None, str(fault) if fault else f"database error ({exc.__class__.__name__})"


@router.get("/health", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def health(engine: EngineDep, response: Response) -> HealthPublic:
    """Report the version and whether the database is readable, writable and migrated."""
    expected = head_revision()
    revision, reason = _database_state(engine)
    database: Literal["ok", "unavailable", "outdated"]
    if reason is not None:
        database = "unavailable"
    elif revision != expected:
        database = "outdated"
        reason = f"schema revision {revision}, expected {expected}: migrations not applied"
    else:
        database = "ok"
    if database != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthPublic(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        database=database,
        schema_revision=revision,
        expected_revision=expected,
        reason=reason,
    )
