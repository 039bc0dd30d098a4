"""Bearer tokens: required for every mutating request, and for reads when so configured.

Tokens come from NAS_API_TOKENS. A presented token is compared with every configured one in
constant time (``hmac.compare_digest``, no early exit), so response times do not tell how
much of a guess was right or which token it resembled. With no tokens configured (allowed
on a loopback host only, see ``Settings``) the service is open to local users.

The dependencies below document and enforce tokens per route; ``check_early`` applies the same
check from the headers alone, so a middleware can refuse a request before its body is read.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from service.errors import ForbiddenError
from service.settings import ApiToken, Role, Settings

LOCAL_OWNER = "local"
_READS = frozenset({"GET", "HEAD"})

_bearer = HTTPBearer(
    auto_error=False,
    description="One of NAS_API_TOKENS, sent as `Authorization: Bearer <token>`.",
)


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the token's name (``token:<fingerprint>`` for an unnamed one) and
    role, or ``local`` (an admin) when auth is off. Rows record ``owner``, never a token."""

    owner: str
    role: Role = "admin"

    def may_act_on(self, owner: str) -> bool:
        """A user acts on what it owns; an admin on everything."""
        return self.role == "admin" or self.owner == owner

    def check_owner(self, owner: str, what: str) -> None:
        """403 unless this principal may change ``what`` (owned by ``owner``)."""
        if not self.may_act_on(owner):
            raise ForbiddenError(
                f"{what} belongs to {owner!r}; the token {self.owner!r} (role user) acts on "
                "its own jobs and devices only (an admin token acts on all)"
            )


def match_token(presented: str, tokens: list[ApiToken]) -> ApiToken | None:
    """The configured token equal to ``presented``, checking all of them in constant time."""
    found: ApiToken | None = None
    given = presented.encode()
    for entry in tokens:
        if hmac.compare_digest(given, entry.token.encode()):
            found = entry
    return found


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _authenticate(
    settings: Settings, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if not settings.api_tokens:
        return Principal(owner=LOCAL_OWNER)
    if credentials is None:
        raise _unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>' with one of NAS_API_TOKENS"
        )
    entry = match_token(credentials.credentials, settings.api_tokens)
    if entry is None:
        raise _unauthorized("invalid bearer token")
    return Principal(owner=entry.name, role=entry.role)


def require_write(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Every request that changes something."""
    return _authenticate(request.app.state.settings, credentials)


def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """Reads are open unless NAS_READS_REQUIRE_TOKEN is set."""
    settings: Settings = request.app.state.settings
    if not settings.reads_require_token:
        return None
    return _authenticate(settings, credentials)


WriteAccess = Annotated[Principal, Depends(require_write)]


async def check_early(connection: HTTPConnection, settings: Settings, prefix: str) -> None:
    """Raise the 401 that ``require_write`` or ``require_read`` would raise for a request
    under ``prefix``, from its headers alone: FastAPI parses a body before it runs any
    dependency, so without this a client with no token gets its body parsed first."""
    scope = connection.scope
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    if not settings.api_tokens or not (path == prefix or path.startswith(prefix + "/")):
        return
    method = scope["method"]
    read = method in _READS
    if (read and settings.reads_require_token) or (not read and method != "OPTIONS"):
        _authenticate(settings, await _bearer(connection))


def document_security(app: FastAPI, settings: Settings) -> None:
    """Make the OpenAPI schema say what this configuration enforces: an operation whose token
    is optional here (reads without NAS_READS_REQUIRE_TOKEN, everything without NAS_API_TOKENS)
    also lists ``{}`` (anonymous) among its security requirements. Otherwise every read
    claims to need a token, and clients and fuzzers built from the schema get it wrong."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                required = bool(settings.api_tokens) and (
                    method != "get" or settings.reads_require_token
                )
                if operation.get("security") and not required:
                    operation["security"] = [*operation["security"], {}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
