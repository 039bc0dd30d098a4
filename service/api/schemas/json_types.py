"""Request bodies hold the JSON types their OpenAPI schema states, before pydantic coerces.

Pydantic's lax mode reads ``true`` as 1 where a number is wanted, ``"3"`` as 3, ``0`` and
``"yes"`` as booleans, and a number or ``"0"`` as a datetime (Unix time). The OpenAPI schema
calls each of these invalid, and the coercion would hide a client's mistake (schemathesis
found them: "schema-violating request accepted", ST201). Strict mode is no cure: it refuses
``3.0`` for an integer (JSON Schema's integer) and, from parsed JSON, every datetime string.
So a request model calls ``check_json_types`` from a ``mode="before"`` validator: its raw input
against its own JSON schema's types, then pydantic's validation as before.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import BaseModel

from service.errors import field_error, shown

Loc = tuple[str | int, ...]
Schema = dict[str, Any]

_NUMBERS = frozenset({"number", "integer"})
#: RFC 3339 (JSON Schema's ``date-time``): a date, a time and an offset.
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def check_json_types(model: type[BaseModel], data: Any) -> Any:
    """``data`` unchanged, or a pydantic error at the first value of another JSON type than
    ``model``'s schema states (a boolean or a string for a number, a number or a string for a
    boolean, a number or a malformed string for a date-time)."""
    schema = _schema(model)
    found = _mismatch(data, schema, schema.get("$defs", {}), ())
    if found is not None:
        loc, message = found
        raise field_error(loc, message)
    return data


@cache
def _schema(model: type[BaseModel]) -> Schema:
    return model.model_json_schema()


def _resolved(node: Any, defs: Schema) -> Schema:
    while isinstance(node, dict) and "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node if isinstance(node, dict) else {}


def _branches(node: Schema, defs: Schema) -> list[Schema]:
    return [_resolved(b, defs) for b in node.get("anyOf", node.get("oneOf", []))]


def _types(node: Schema, defs: Schema) -> frozenset[str] | None:
    """The JSON types the node admits; None where it does not say (any type)."""
    declared = node.get("type")
    if declared is not None:
        return frozenset([declared] if isinstance(declared, str) else declared)
    branches = _branches(node, defs)
    if not branches:
        return None
    admitted = [_types(b, defs) for b in branches]
    if any(types is None for types in admitted):
        return None
    return frozenset().union(*admitted)  # type: ignore[arg-type]


def _date_time(node: Schema, defs: Schema) -> bool:
    return node.get("format") == "date-time" or any(
        _date_time(b, defs) for b in _branches(node, defs)
    )


def _refused(value: Any, node: Schema, defs: Schema) -> str | None:
    types = _types(node, defs)
    if types is None or value is None:
        return None
    if isinstance(value, bool):
        wrong = "boolean" not in types and bool(types & _NUMBERS)
        return f"{shown(value)} is not a number" if wrong else None
    if isinstance(value, int | float):
        if types & _NUMBERS:
            return None
        if "boolean" in types:
            return f"{shown(value)} is not a boolean (true or false)"
        if _date_time(node, defs):
            return f"{shown(value)} is not a date-time string (RFC 3339)"
        return None
    if isinstance(value, str) and "string" not in types:
        if types & _NUMBERS:
            return f"{shown(value)} is a string, not a number"
        if "boolean" in types:
            return f"{shown(value)} is a string, not a boolean (true or false)"
    if isinstance(value, str) and _date_time(node, defs) and not _DATE_TIME.match(value):
        return f"{shown(value)} is not a date-time (RFC 3339: 2026-11-01T12:00:00Z)"
    return None


def _members(node: Schema, defs: Schema, kind: str) -> list[Schema]:
    """The node and its branches of JSON type ``kind`` (``X | None``): where an object's
    properties or an array's items are declared."""
    return [node, *(b for b in _branches(node, defs) if b.get("type") == kind)]


def _mismatch(value: Any, node: Any, defs: Schema, loc: Loc) -> tuple[Loc, str] | None:
    node = _resolved(node, defs)
    message = _refused(value, node, defs)
    if message is not None:
        return loc, message
    children: list[tuple[Any, Any, Loc]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            for member in _members(node, defs, "object"):
                extra = member.get("additionalProperties")
                child = member.get("properties", {}).get(key, extra)
                if isinstance(child, dict):
                    children.append((item, child, (*loc, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for member in _members(node, defs, "array"):
                prefix = member.get("prefixItems", [])
                child = prefix[index] if index < len(prefix) else member.get("items")
                if isinstance(child, dict):
                    children.append((item, child, (*loc, index)))
    for item, child, where in children:
        found = _mismatch(item, child, defs, where)
        if found is not None:
            return found
    return None
