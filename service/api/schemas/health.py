"""Bodies of ``GET /health``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["ok", "unavailable", "outdated"]
    schema_revision: str | None
    expected_revision: str
