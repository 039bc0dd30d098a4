"""405 Method Not Allowed with an ``Allow`` header that lists every method of the path.

Starlette answers a method that a path lacks from the first route whose path matches, so its
``Allow`` named that route's methods only: ``/api/v1/jobs`` said ``Allow: POST`` though ``GET``
is there too (RFC 9110 wants all of them; found by schemathesis, ST205). This handler lists the
methods of every operation of the app's OpenAPI schema whose path template matches the path,
plus those Starlette named (routes the schema leaves out, such as ``/openapi.json``).

``OPTIONS`` is not implemented (the service has no CORS, see docs/security.md): like any other
method a path lacks, it is a 405 whose ``Allow`` lists the path's methods.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

#: How ``Allow`` lists methods: the usual order, not the schema's.
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def install_allow_header(app: FastAPI) -> None:
    """Answer every 405 of ``app`` with the path's methods in ``Allow``."""
    templates: list[tuple[re.Pattern[str], frozenset[str]]] = []

    def documented(path: str) -> set[str]:
        if not templates:  # built on the first 405: the schema is complete by then
            for template, operations in app.openapi().get("paths", {}).items():
                regex, _, _ = compile_path(template)
                templates.append((regex, frozenset(m.upper() for m in operations)))
        return {m for regex, methods in templates if regex.match(path) for m in methods}

    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        scope = request.scope
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        headers = dict(exc.headers or {})
        named = {m.strip().upper() for m in headers.get("Allow", "").split(",") if m.strip()}
        methods = documented(path) | named
        headers["Allow"] = ", ".join(sorted(methods, key=_rank))
        return JSONResponse(status_code=405, content={"detail": exc.detail}, headers=headers)

    app.add_exception_handler(405, method_not_allowed)


def _rank(method: str) -> tuple[int, str]:
    return (_ORDER.index(method) if method in _ORDER else len(_ORDER), method)
