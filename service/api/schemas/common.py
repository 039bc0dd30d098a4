"""Error bodies and text types shared by every resource."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

#: One line of printable text: no control characters (PostgreSQL refuses NUL in text).
Line = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]


class ErrorPublic(BaseModel):
    """Every error body: a message a person can act on, never a traceback."""

    detail: str


class FieldError(BaseModel):
    """One field at fault: where (``loc``, and ``field`` as a dotted path), and why."""

    loc: list[str | int]
    field: str
    msg: str
    type: str


class ValidationErrorPublic(BaseModel):
    """422: every field at fault, and one line joining them for people reading logs."""

    detail: list[FieldError]
    message: str


#: The errors every ``/api/v1`` router can answer, for the OpenAPI schema.
#: Routes that act on something a user token may not own (a job, a device, a subnet's job).
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorPublic, "description": "A user token acting on what it does not own."}
}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "Missing or wrong bearer token."},
    413: {"model": ErrorPublic, "description": "Body over NAS_MAX_REQUEST_BYTES."},
    422: {"model": ValidationErrorPublic, "description": "The fields at fault."},
}
