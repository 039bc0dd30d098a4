"""What is refused before a request's body is read: a body over the size limit, and a request
without a valid token where one is needed; both answered with the same JSON as everything else.

FastAPI's own ``max_body_size`` answers a too-large ``Content-Length`` with plain text; this
middleware refuses it up front as JSON and, for bodies without a length (chunked), stops
reading at the limit by raising a 413 that the app's error handlers turn into JSON. FastAPI
parses a body before it runs any dependency, ``require_write`` included, so the token is
checked here too (``auth.check_early``): a client without one gets its 401 before a byte of
its body is read or parsed, and cannot stall the event loop with large bodies.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import check_early
from service.settings import Settings


def _message(limit: int) -> str:
    return f"request body larger than {limit} bytes (NAS_MAX_REQUEST_BYTES)"


class BodyLimitMiddleware:
    """The size limit of ``settings.max_request_bytes`` and the token check of every request
    under ``api_prefix``, both before the body is read."""

    def __init__(self, app: ASGIApp, *, settings: Settings, api_prefix: str) -> None:
        self.app = app
        self.settings = settings
        self.max_bytes = settings.max_request_bytes
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        declared = connection.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": _message(self.max_bytes)}, status_code=413)
            await response(scope, receive, send)
            return
        try:
            await check_early(connection, self.settings, self.api_prefix)
        except HTTPException as exc:  # the body the app's handler gives an HTTPException
            response = JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=_message(self.max_bytes))
            return message

        await self.app(scope, limited, send)
