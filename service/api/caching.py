"""Serialized read answers kept in memory, keyed by the rows they are made of; strong ETags.

A key is everything an answer is computed from, as the store read it (raw columns, JSON as
stored text), so an entry cannot go stale: a write that changes a job or a front (a stage
finishing, a specialisation joining a front, ``service.store.results.refresh_fronts``, a
subnet measured again) changes the rows, hence the key, and the next read builds the new
answer. The rows are still read on every request (a few indexed queries, no ORM); what a hit
saves is decoding the JSON columns, building and validating the pydantic models, and encoding
the answer, which is most of a read's time.

Each API process has its own caches (nothing is shared, nothing to invalidate); an ETag is a
hash of the answer's bytes, so every process gives the same answer the same ETag.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from typing import Generic, TypeVar

from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.deps import get_read_session

V = TypeVar("V")

#: Fronts are revalidated, never reused blindly: a specialisation may still add to a finished
#: job's front. A client (or a proxy) keeps the answer and asks again with If-None-Match.
FRONT_CACHE_CONTROL = "no-cache"


class LruCache(Generic[V]):
    """A bounded, thread-safe map (the API's sync routes run in a thread pool)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
        value = build()  # outside the lock: two threads may build the same answer, both right
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


class Tagged:
    """An answer's JSON bytes and their strong ETag."""

    __slots__ = ("body", "etag")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match compares weakly; ``*`` matches any current answer."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def tagged_response(
    request: Request, answer: Tagged, cache_control: str = FRONT_CACHE_CONTROL
) -> Response:
    """200 with the bytes, or 304 without them when the client holds them already."""
    headers = {"ETag": answer.etag, "Cache-Control": cache_control}
    if not_modified(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


_read_session = contextmanager(get_read_session)


async def in_read_session(request: Request, answer: Callable[[Session], Response]) -> Response:
    """``answer(session)`` in one trip to the thread pool, with ``ReadSessionDep``'s session.

    A sync route with ``ReadSessionDep`` makes three trips (the dependency's enter, the route,
    the dependency's exit), each worth more CPU than a cached answer itself (about 0.15 ms
    each, and a turn of the GIL between threads); the hot reads make one.
    """

    def run() -> Response:
        with _read_session(request) as session:
            return answer(session)

    return await run_in_threadpool(run)


#: A job's answer is ~2 KB (its spec is most of it) and its key about as much: ~16 MB.
JOBS: LruCache[bytes] = LruCache(4096)
#: All fronts of a job, or one front: a few KB each.
FRONTS: LruCache[Tagged] = LruCache(2048)


def clear_caches() -> None:
    """Forget every answer (tests that count how answers are built)."""
    JOBS.clear()
    FRONTS.clear()
