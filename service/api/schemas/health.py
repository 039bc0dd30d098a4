"""Bodies of ``GET /health``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["ok", "unavailable", "outdated"]
    schema_revision: str | None
    expected_revision: str
    reason: str | None = Field(
        default=None,
        description="Why the database is not ok ('database is corrupt (database disk image is "
        "malformed)', 'database is locked by another process (database is locked)'); null "
        "when it is ok.",
    )
