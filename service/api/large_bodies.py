"""Large JSON bodies parsed in a worker thread, so that parsing them does not stall the event loop.

FastAPI reads and parses (``json.loads``) a request body on the event loop, before it runs any
dependency; a few megabytes take long enough (0.1-0.5 s for 6 MB) to hold up every other
request, ``/health`` included. A router built with ``route_class=OffLoopJSONRoute`` parses
bodies over ``OFF_LOOP_BYTES`` in a worker thread instead and hands FastAPI the result, so
validation, dependencies and errors stay exactly FastAPI's.

The parse uses the standard library's pure-Python scanner on purpose: the C one holds the GIL
for the whole document, so in a thread it would block the loop as long as on it; the Python one
gives the GIL up between values, for about 3-4 times the CPU time (6 MB of numbers: 2-5 s).
Its one other difference: it recurses deeper per level, so a document nested more than about
300 levels (the C parser: about 1000) is refused, with the same 422.

Validation still runs as one pydantic call that holds the GIL, on the loop or off it alike:
quick where the bulk is in a field the model does not have (refused without being looked into),
not for a large valid body (a 6 MB latency table: about 0.3-0.7 s here).
"""

from __future__ import annotations

import email.message
import json
import json.scanner
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

#: Bodies up to this size are parsed the usual way: faster than a trip to a thread.
OFF_LOOP_BYTES = 64 * 1024
#: Values parsed between two offers of the GIL to the other threads (about half a millisecond).
_VALUES_PER_YIELD = 256


def parse_json(body: bytes) -> Any:
    """``json.loads(body)``, same encodings, values and errors, in Python bytecode that offers
    the GIL to the other threads every ``_VALUES_PER_YIELD`` values: the event loop then gets it
    back at once rather than after the interpreter's switch interval (5 ms), which a request
    pays several times over."""
    parsed = 0

    def yielding(parse: Callable[..., Any]) -> Callable[..., Any]:
        def parse_and_yield(*args: Any) -> Any:
            nonlocal parsed
            parsed += 1
            if parsed % _VALUES_PER_YIELD == 0:
                time.sleep(0)  # releases the GIL
            return parse(*args)

        return parse_and_yield

    decoder = json.JSONDecoder(parse_float=yielding(float), parse_int=yielding(int))
    # The scanner reads these from the decoder: every value but true, false and null passes
    # through one of them.
    decoder.parse_object = yielding(decoder.parse_object)  # type: ignore[attr-defined]
    decoder.parse_array = yielding(decoder.parse_array)  # type: ignore[attr-defined]
    decoder.parse_string = yielding(decoder.parse_string)  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _is_json(request: Request) -> bool:
    """The content types FastAPI parses as JSON (with a strict content type, its default)."""
    value = request.headers.get("content-type")
    if not value:
        return False
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class _ParsedRequest(Request):
    """A request whose body was read and parsed already; a parse error is raised where
    FastAPI asks for the JSON, so it answers exactly as it would have."""

    def __init__(self, request: Request, body: bytes, parsed: Any, error: Exception | None):
        super().__init__(request.scope, request.receive)
        self._read = body
        self._parsed = parsed
        self._error = error

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield self._read
        yield b""

    async def body(self) -> bytes:
        return self._read

    async def json(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._parsed


def _parse_outcome(body: bytes) -> tuple[Any, Exception | None]:
    try:
        return parse_json(body), None
    except Exception as exc:  # FastAPI turns each kind into its own 4xx; keep it for that
        return None, exc


class OffLoopJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON body, when over ``OFF_LOOP_BYTES``, is parsed in a worker
    thread; smaller bodies and other routes go FastAPI's usual way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_off_loop(request: Request) -> Response:
            if self.body_field is None or not _is_json(request):
                return await handle(request)
            try:
                body = await request.body()
            except HTTPException:  # the body limit's 413
                raise
            except Exception:  # a client gone mid-body: FastAPI answers it as usual
                return await handle(request)
            if len(body) > OFF_LOOP_BYTES:
                parsed, error = await anyio.to_thread.run_sync(_parse_outcome, body)
                request = _ParsedRequest(request, body, parsed, error)
            return await handle(request)

        return handle_off_loop
