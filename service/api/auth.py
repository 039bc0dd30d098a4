"""Bearer tokens: required for every mutating request, and for reads when so configured.

Tokens come from NAS_API_TOKENS. A presented token is compared with every configured one in
constant time (``hmac.compare_digest``, no early exit), so response times do not tell how
much of a guess was right or which token it resembled. With no tokens configured (allowed
on a loopback host only, see ``Settings``) the service is open to local users.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.settings import Settings

LOCAL_OWNER = "local"

_bearer = HTTPBearer(
    auto_error=False,
    description="One of NAS_API_TOKENS, sent as `Authorization: Bearer <token>`.",
)


@dataclass(frozen=True)
class Principal:
    """Who sent a request: ``token:<fingerprint>`` or ``local`` when auth is off. The
    fingerprint (a sha256 prefix) identifies a token in job rows without storing it."""

    owner: str


def fingerprint(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def match_token(presented: str, tokens: list[str]) -> str | None:
    """The configured token equal to ``presented``, checking all of them in constant time."""
    found: str | None = None
    given = presented.encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            found = token
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
    token = match_token(credentials.credentials, settings.api_tokens)
    if token is None:
        raise _unauthorized("invalid bearer token")
    return Principal(owner=fingerprint(token))


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
