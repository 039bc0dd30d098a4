"""A size limit on request bodies, answered with the same JSON error as everything else.

FastAPI's own ``max_body_size`` answers a too-large ``Content-Length`` with plain text; this
middleware refuses it up front as JSON and, for bodies without a length (chunked), stops
reading at the limit by raising a 413 that the app's error handlers turn into JSON.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _message(limit: int) -> str:
    return f"request body larger than {limit} bytes (NAS_MAX_REQUEST_BYTES)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": _message(self.max_bytes)}, status_code=413)
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
