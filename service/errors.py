"""Error responses: JSON with a ``detail`` a person can act on; never a traceback.

The service layer raises the exceptions below (it knows no HTTP); the handlers turn them, and
FastAPI's own validation errors, into bodies that name the field at fault.
"""

from __future__ import annotations

import json
import logging
import math
import re
import reprlib
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import DatabaseError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import database_fault

log = logging.getLogger("service")

Loc = Sequence[str | int]


class ServiceError(Exception):
    """A request the service understood and refuses; ``status_code`` says which kind."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    status_code = 404


class ForbiddenError(ServiceError):
    """The token is valid, but its role does not let it act on this resource."""

    status_code = 403


class ConflictError(ServiceError):
    """The request is valid but the resource is not in a state that allows it."""

    status_code = 409


class InvalidFieldError(ServiceError):
    """A field that passed the schema but not a check that needs the database or the disk."""

    status_code = 422

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)


def _field(loc: Loc) -> str:
    # "body.dataset.root" reads better as "dataset.root"; query and path names stay prefixed.
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    return ".".join(str(p) for p in parts) or "body"


def _field_error(loc: Loc, message: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "field": _field(loc), "msg": message, "type": kind}


# Model-level checks (pydantic ``model_validator``) name their field in front of the message:
# "preset: 'x' is not a preset of ...". Lower-case dotted names only, so prose is left alone.
# A check whose field path holds a user's key (``search.budgets.<device>``) cannot spell it
# so; it raises ``field_error``, which carries the path in ``ctx["loc"]``.
_NAMED_FIELD = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (?P<message>.+)$", re.S)

#: Pydantic's checks of a number against a bound: for NaN or an infinity the bound is not the
#: reason (NaN compares false with every bound), so their message is replaced.
_NUMBER_CHECKS = frozenset(
    {"finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal"}
)
#: Errors whose message says all there is: checks of ours (they name the value themselves,
#: and their input may be a whole model) and a missing field (no value was given).
_NO_VALUE_SHOWN = frozenset({"value_error", "assertion_error", "json_invalid", "missing"})

_SHORT = reprlib.Repr()  # a long string cut in the middle; a nested input two levels deep
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 2


def shown(value: object) -> str:
    """A value as a client sent it, short enough for one line of an error: JSON spelling of
    numbers (``NaN``, ``Infinity``), ``repr`` of strings (a NUL shows as ``\\x00``), and the
    length of a string that had to be cut."""
    if (
        value is None
        or isinstance(value, bool)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        return json.dumps(value)
    text = _SHORT.repr(value)
    if isinstance(value, str) and len(value) > _SHORT.maxstring:
        text += f" ({len(value)} characters)"
    return text


def field_error(loc: Loc, message: str) -> PydanticCustomError:
    """A pydantic check's error pointing at ``loc`` below the field or model it validates, for
    paths through a user's keys (``search.budgets.<device>``: device names hold dots, so a
    ``"field: message"`` prefix cannot spell them)."""
    return PydanticCustomError("value_error", message, {"loc": tuple(loc)})


def _reason(error: dict[str, Any]) -> str:
    """Why the value was refused, with the value: "... (got 0)", "NaN is not a finite number"."""
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = str(error.get("type", ""))
    if kind == "missing":
        return "required; not given"
    if kind in _NO_VALUE_SHOWN or "input" not in error:
        return message
    value = error["input"]
    if isinstance(value, float) and not math.isfinite(value):
        reason = f"{shown(value)} is not a finite number"
        return reason if kind in _NUMBER_CHECKS else f"{reason}; {message}"
    return f"{message} (got {shown(value)})"


def validation_body(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body: each error's location, dotted field, message and type, plus one line
    joining them. Every message says why and, cut to a line, what value was given (never the
    whole input, which may be an upload)."""
    items = []
    for error in errors:
        loc = list(error.get("loc", ()))
        message = _reason(error)
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid":
            loc = loc[:1]  # the character offset is no field
            message = f"request body is not valid JSON: {context.get('error', message)}"
        if isinstance(context.get("loc"), tuple | list):  # a check that points at its field
            loc += list(context["loc"])
        named = _NAMED_FIELD.match(message)
        if named:  # a check that names its field: point at that field (once)
            parts = [int(p) if p.isdigit() else p for p in named["field"].split(".")]
            if loc[-len(parts) :] != parts:
                loc += parts
            message = named["message"]
        items.append(_field_error(loc, message, str(error.get("type", ""))))
    summary = "; ".join(f"{item['field']}: {item['msg']}" for item in items)
    return {"detail": items, "message": summary}


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content=validation_body(exc.errors()))


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, InvalidFieldError):
        body = validation_body([{"loc": exc.loc, "msg": exc.detail, "type": "value_error"}])
        return JSONResponse(status_code=422, content=body)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})


#: FastAPI's 400 for a body it could not decode at all (bytes that are not UTF-8): the same
#: mistake as malformed JSON, so it gets the same 422 naming ``body`` (found by fuzzing).
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        reason = str(exc.__cause__) if isinstance(exc.__cause__, ValueError) else "unreadable"
        body = validation_body([{"loc": ["body"], "msg": reason, "type": "json_invalid"}])
        return JSONResponse(status_code=422, content=body)
    return JSONResponse(
        status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": "database unavailable; try again shortly"},
        headers={"Retry-After": "5"},
    )


async def _database_unusable(request: Request, exc: Exception) -> JSONResponse:
    # A corrupt file or one that is no database (sqlite3.DatabaseError): a 503 that says so.
    # Other DatabaseErrors (a constraint violated, a query's mistake) are bugs: the 500 below.
    fault = database_fault(exc)
    if fault is None:
        raise exc
    log.error("database unusable on %s %s: %s", request.method, request.url.path, fault)
    return JSONResponse(status_code=503, content={"detail": str(fault)})


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log; the client learns only that it was not its fault.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(DatabaseError, _database_unusable)
    app.add_exception_handler(Exception, _unhandled)
