"""Error responses: JSON with a ``detail`` a person can act on; never a traceback.

The service layer raises the exceptions below (it knows no HTTP); the handlers turn them, and
FastAPI's own validation errors, into bodies that name the field at fault.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

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
_NAMED_FIELD = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (?P<message>.+)$", re.S)


def validation_body(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body: each error's location, dotted field, message and type (no echoed input,
    which may be a whole upload), plus one line joining them."""
    items = []
    for error in errors:
        loc = list(error.get("loc", ()))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid":
            loc = loc[:1]  # the character offset is no field
            message = f"request body is not valid JSON: {context.get('error', message)}"
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


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log; the client learns only that it was not its fault.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unhandled)
