"""Checks that a JSON document (a job spec, a latency table) can be stored as it is."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from service.errors import InvalidFieldError, Loc


def _first_non_finite(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, (*path, key))
        if found is not None:
            return found
    return None


def check_finite(document: Any, loc: Loc) -> None:
    """Refuse NaN and infinities (``1e999`` parses to one) with the path of the first: JSON
    columns cannot hold them, and pydantic's JSON dump would silently turn them into null.
    Give it the python-mode dump (``model_dump()``), before that conversion."""
    found = _first_non_finite(document, tuple(loc))
    if found is not None:
        raise InvalidFieldError(found, "NaN and infinite numbers are not allowed")


def canonical_json(document: Any) -> bytes:
    """``document`` as compact, key-sorted JSON: the bytes a checksum is taken of."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
