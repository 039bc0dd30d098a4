"""Vectorised latency prediction from a table: the search asks for tens of thousands a second.

``LatencyPredictor`` precomputes, for every term of the space's decomposition and every
combination of its features, the latency of the block found there (0 where there is none,
NaN where the table lacks the block). Predicting a batch is then: archs -> ``[N, F]``
feature indices -> ``[N, terms]`` flat positions -> one gather -> row sum. The calibration is
folded into the gathered values, so it costs nothing per arch.
There is no Python loop over layers, only the per-arch read of its fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

import search_spaces
from nas.hardware.decompose import NO_BLOCK, Decomposition, decompose
from nas.hardware.table import LatencyTable, TableError, check_table_for
from search_spaces import SearchSpace


class MissingEntryError(TableError):
    """An arch needs a block the table has no entry for."""


@lru_cache(maxsize=32)
def decomposition_of(space: SearchSpace) -> Decomposition:
    """Spaces are immutable, cached singletons, so their decompositions are too."""
    return decompose(space)


class LatencyPredictor:
    """Predicted latency (ms) of archs of ``table``'s space on ``table``'s device.

    Thread-safe after construction (read-only arrays). ``calibrated=False`` returns the plain
    sum of entries (used to fit the calibration itself). A table with an ``anchor`` (re-anchored
    to the machine's level at use time, ``nas.hardware.anchor``) has its calibrated predictions
    scaled by ``anchor.scale``.
    """

    def __init__(
        self, table: LatencyTable, space: SearchSpace | None = None, *, calibrated: bool = True
    ) -> None:
        if space is None:
            space = search_spaces.get(table.space, preset=table.preset)
        check_table_for(table, space.name, space.preset)
        if calibrated and table.calibration is None:
            raise TableError(
                f"latency table for {table.describe()} has no calibration yet "
                f"({len(table.calibration_points)} of the whole-network measurements it needs); "
                "finish it with `nas device profile`"
            )
        self.table = table
        self.space = space
        self.calibration = table.calibration if calibrated else None
        self.decomposition = decomposition_of(space)
        specs = self.decomposition.specs
        latency = np.full(len(specs) + 1, np.nan)
        latency[NO_BLOCK] = 0.0  # the last slot: "no block here" costs nothing
        for i, spec in enumerate(specs):
            entry = table.entries.get(spec.key)
            if entry is not None:
                latency[i] = entry.value(table.statistic)
        self._latency = latency
        self._flat = latency[self.decomposition.flat_table]
        self._present = (self.decomposition.flat_table != NO_BLOCK).astype(np.float64)
        # The calibration is linear in the entries and the block count, and the anchor scales
        # its result, so both fold into the gathered values:
        # scale * (sum(slope * entry + per_block) + intercept), still one gather.
        calibration = self.calibration
        self.scale = 1.0 if calibration is None or table.anchor is None else table.anchor.scale
        self._predicted = (
            self._flat
            if calibration is None
            else self.scale
            * (calibration.slope * self._flat + calibration.per_block_ms * self._present)
        )
        self._intercept = 0.0 if calibration is None else self.scale * calibration.intercept_ms

    def block_sums(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N]`` sums of the entries of every block of each arch (no calibration)."""
        return self._gather_sum(self._flat, archs)

    def block_counts(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N]`` number of blocks of each arch (``len(space.blocks(arch))``)."""
        return self._gather_sum(self._present, archs)

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N]`` predicted latencies in ms."""
        return self._gather_sum(self._predicted, archs) + self._intercept

    def _gather_sum(self, values: np.ndarray, archs: Sequence[Any]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        features = self.decomposition.features(archs)
        sums = values[self.decomposition.flat_index(features)].sum(axis=1)
        if np.isnan(sums).any():
            self._raise_missing(archs, features, sums)
        return sums

    def predict_one(self, arch: Any) -> float:
        return float(self.predict([arch])[0])

    def reference_sum(self, arch: Any) -> float:
        """The per-arch definition (a loop over ``blocks()``): what ``block_sums`` must equal."""
        total = 0.0
        for spec in self.space.blocks(arch):
            entry = self.table.entries.get(spec.key)
            if entry is None:
                raise self._missing(arch, spec.key)
            total += entry.value(self.table.statistic)
        return total

    def _raise_missing(self, archs: Sequence[Any], features: np.ndarray, sums: np.ndarray) -> None:
        row = int(np.flatnonzero(np.isnan(sums))[0])
        ids = self.decomposition.key_ids(features[row : row + 1])[0]
        missing = [i for i in ids if i != NO_BLOCK and np.isnan(self._latency[i])]
        raise self._missing(archs[row], self.decomposition.specs[missing[0]].key)

    def _missing(self, arch: Any, key: str) -> MissingEntryError:
        resolution = getattr(arch, "resolution", None)
        covered = self.table.resolutions
        hint = (
            f"the table covers resolutions {covered}, the arch runs at {resolution}"
            if resolution not in covered
            else "the table is incomplete; finish it with `nas device profile`"
        )
        return MissingEntryError(
            f"latency table for {self.table.describe()} lacks an entry for block {key!r} "
            f"needed by arch {self.space.arch_id(arch)} ({hint})"
        )
