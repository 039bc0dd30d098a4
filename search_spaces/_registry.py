"""Registry of search spaces: an explicit name -> module mapping, nothing registered on import.

Spaces are immutable, so ``get`` caches one instance per (name, preset, num_classes,
in_channels); that is safe to share across threads.
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple, Protocol

from search_spaces import bignas, nasnet, ofa_mbv3, proxyless, single_path
from search_spaces.base import SearchSpace


class _Builder(Protocol):
    def __call__(
        self, preset: str, *, num_classes: int | None = None, in_channels: int = 3
    ) -> SearchSpace: ...


class _Entry(NamedTuple):
    build: _Builder
    presets: tuple[str, ...]


_SPACES = MappingProxyType(
    {
        ofa_mbv3.NAME: _Entry(ofa_mbv3.build, ofa_mbv3.PRESETS),
        bignas.NAME: _Entry(bignas.build, bignas.PRESETS),
        proxyless.NAME: _Entry(proxyless.build, proxyless.PRESETS),
        single_path.NAME: _Entry(single_path.build, single_path.PRESETS),
        nasnet.NAME: _Entry(nasnet.build, nasnet.PRESETS),
    }
)


def names() -> list[str]:
    """Registered search spaces."""
    return sorted(_SPACES)


def _entry(name: str) -> _Entry:
    entry = _SPACES.get(name)
    if entry is None:
        raise ValueError(f"unknown search space {name!r}; allowed values: {names()}")
    return entry


def presets(name: str) -> list[str]:
    """Presets of space ``name``; every space has ``tiny`` and ``imagenet``."""
    return list(_entry(name).presets)


def get(
    name: str,
    *,
    preset: str = "tiny",
    num_classes: int | None = None,
    in_channels: int = 3,
) -> SearchSpace:
    """The space ``name`` at ``preset``; ``num_classes`` defaults to the preset's."""
    entry = _entry(name)
    if preset not in entry.presets:
        raise ValueError(
            f"unknown preset {preset!r} for search space {name!r}; "
            f"allowed values: {list(entry.presets)}"
        )
    return _cached(name, preset, num_classes, in_channels)


@lru_cache(maxsize=64)
def _cached(name: str, preset: str, num_classes: int | None, in_channels: int) -> SearchSpace:
    return _SPACES[name].build(preset, num_classes=num_classes, in_channels=in_channels)
