"""The archive of evaluated subnets: every distinct network scored so far, in order.

Strategies with an expensive objective pay for each *distinct* network once: the archive
answers repeats from memory and counts true evaluations against the budget, so "number of
true evaluations" means the same thing for every strategy (what ``search_quality`` plots).
"""

from __future__ import annotations

from collections.abc import KeysView

import numpy as np

from nas.search.problem import Candidates, SearchProblem


class BudgetExhaustedError(RuntimeError):
    """More new networks were sent for evaluation than the budget has left."""


class Archive:
    """Evaluated candidates and their ``[N, M]`` objective values, deduplicated by key."""

    def __init__(self, problem: SearchProblem, max_evaluations: int | None = None) -> None:
        if max_evaluations is not None and max_evaluations < 1:
            raise ValueError(f"max_evaluations: must be >= 1, got {max_evaluations}")
        self.problem = problem
        self.max_evaluations = max_evaluations
        self._index: dict[bytes, int] = {}
        self._parts: list[Candidates] = []
        self._values: list[np.ndarray] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def keys(self) -> KeysView[bytes]:
        """Keys of the networks evaluated so far (a live view)."""
        return self._index.keys()

    @property
    def remaining(self) -> int | None:
        """True evaluations left (``None``: unbounded)."""
        return None if self.max_evaluations is None else self.max_evaluations - self._size

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def evaluate(self, candidates: Candidates) -> np.ndarray:
        """Objective values of every candidate; networks not seen before are evaluated (one
        batch per objective) and recorded in the order they first appear."""
        new: list[int] = []
        pending: set[bytes] = set()
        for i, key in enumerate(candidates.keys):
            if key not in self._index and key not in pending:
                pending.add(key)
                new.append(i)
        if self.remaining is not None and len(new) > self.remaining:
            raise BudgetExhaustedError(
                f"{len(new)} new networks but only {self.remaining} evaluations left"
            )
        if new:
            fresh = candidates.take(new)
            values = self.problem.evaluate(fresh)
            for offset, key in enumerate(fresh.keys):
                self._index[key] = self._size + offset
            self._parts.append(fresh)
            self._values.append(values)
            self._size += len(new)
        stacked = self.values()
        return stacked[[self._index[key] for key in candidates.keys]]

    def values(self) -> np.ndarray:
        if not self._values:
            return np.empty((0, len(self.problem.objectives)))
        if len(self._values) > 1:  # compact, so repeated calls stay cheap
            self._values = [np.concatenate(self._values)]
            self._parts = [Candidates.concat(self._parts)]
        return self._values[0]

    def candidates(self) -> Candidates:
        self.values()
        if not self._parts:
            return self.problem.candidates([])
        return self._parts[0]
