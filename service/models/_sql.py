"""Small helpers shared by the table definitions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CheckConstraint

#: Table options of every table with an ``id``: ids reach URLs, bookmarks and log cursors, so one
#: is never issued twice. SQLite without AUTOINCREMENT gives the next row max(id) + 1, the id of
#: a row just deleted; PostgreSQL's SERIAL sequences never go back. (Migration 0003.)
IDS_NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


def one_of(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    """``column IN (...)``: the database refuses a value the code does not know."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)
