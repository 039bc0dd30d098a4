"""Callbacks that Ray Tune can pickle, for ``workers.finetuning.finetune_arch``'s ``on_epoch``
and ``should_stop``.

Tune saves a Tuner's callbacks and stopper with its experiment (``tuner.pkl``, written as the
Tuner is made), so a callback closing over anything with a lock (a progress bar, a queue's
task, a stage's event log) fails with "cannot pickle '_thread.lock' object" before a trial
runs. ``relayed(fn, key)`` hands Tune a stand-in that holds ``key`` only and calls ``fn``
through this process's table while the ``with`` block lasts. A key named after the experiment
(its directory) lets the copy that a restored experiment unpickles reach the callback of the
call that restored it; with nothing registered under its key, a stand-in answers ``default``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_live: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Relay:
    """Calls the function registered under ``key`` in this process, else answers
    ``default``; pickles as its key and default."""

    key: str
    default: Any = None

    def __call__(self, *args: Any) -> Any:
        with _lock:
            fn = _live.get(self.key)
        return self.default if fn is None else fn(*args)


@contextmanager
def relayed(fn: Callable[..., Any], key: str, default: Any = None) -> Iterator[Relay]:
    """A picklable stand-in for ``fn`` while the block lasts; one block per key at a time
    (a second one for the same key is refused with ``ValueError``)."""
    with _lock:
        if key in _live:
            raise ValueError(f"key: {key!r} is relayed already in this process")
        _live[key] = fn
    try:
        yield Relay(key, default)
    finally:
        with _lock:
            _live.pop(key, None)
