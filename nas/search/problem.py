"""A search problem: a space, the objectives to optimise and the budgets to respect.

Budgets are checked when the problem is made: a budget that no subnet meets is refused at once
(``InfeasibleBudgetError``, with the smallest value found) instead of letting a search sample
forever. The space's min subnet decides for MACs and params; a measured latency table is noisy
(a 5x5 block may time below its 3x3 sibling), so when the min subnet misses a budget the check
also probes random subnets and the min subnet's near neighbours before refusing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.search.objectives import Direction, Objective
from nas.search.operators import Operators, default_operators

PROBE = 1024
"""Subnets probed (half random, half near the min subnet) when the min subnet misses a budget."""


class InfeasibleBudgetError(ValueError):
    """A constraint that no subnet of the space can meet (alone, or with the other budgets)."""

    def __init__(self, constraint: Constraint, minimum: float, *, jointly: bool = False) -> None:
        unit = constraint.objective.unit
        where = (
            "together with the other budgets; the subnet found closest to meeting them all needs"
            if jointly
            else f"the smallest the space reaches (its min subnet and {PROBE} probed subnets) is"
        )
        super().__init__(
            f"{constraint.objective.name}: budget {constraint.max_value:.6g} {unit} cannot be "
            f"met; {where} {minimum:.6g} {unit}; allowed values: >= {minimum:.6g}"
        )
        self.constraint, self.minimum = constraint, minimum


@dataclass(frozen=True)
class Constraint:
    """``objective(arch) <= max_value`` for a minimised objective (latency, MACs, params)."""

    objective: Objective
    max_value: float

    def __post_init__(self) -> None:
        if self.objective.direction != "minimize":
            raise ValueError(
                f"objective: {self.objective.name!r} is maximised; budgets bound minimised "
                "objectives (latency, macs, params)"
            )
        if not np.isfinite(self.max_value) or self.max_value <= 0:
            raise ValueError(
                f"max_value: budget for {self.objective.name!r} must be a positive finite "
                f"number, got {self.max_value!r}"
            )

    @property
    def name(self) -> str:
        return f"{self.objective.name}<={self.max_value:g}"


@dataclass
class Candidates:
    """A batch of archs with what every strategy needs of them, computed once.

    ``keys`` identify networks (the encoding's bytes: equal iff the archs are the same
    network, skipped blocks ignored), ``limits`` holds each constraint's value and
    ``violation`` the summed relative excess over the budgets (0: feasible); ``genes`` are the
    genomes of vectorised operators (``None`` with the space's own operators).
    """

    archs: list[Any]
    encodings: np.ndarray
    keys: list[bytes]
    limits: np.ndarray
    violation: np.ndarray
    genes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.archs)

    def take(self, index: np.ndarray | Sequence[int]) -> Candidates:
        index = np.asarray(index, dtype=np.int64)
        return Candidates(
            archs=[self.archs[i] for i in index],
            encodings=self.encodings[index],
            keys=[self.keys[i] for i in index],
            limits=self.limits[index],
            violation=self.violation[index],
            genes=None if self.genes is None else self.genes[index],
        )

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        return Candidates(
            archs=[a for p in parts for a in p.archs],
            encodings=np.concatenate([p.encodings for p in parts]),
            keys=[k for p in parts for k in p.keys],
            limits=np.concatenate([p.limits for p in parts]),
            violation=np.concatenate([p.violation for p in parts]),
            genes=(
                None
                if any(p.genes is None for p in parts)
                else np.concatenate([p.genes for p in parts])  # type: ignore[misc]
            ),
        )


class SearchProblem:
    """``space`` + ``objectives`` (one column each) + ``constraints`` (budgets).

    Thread-safe as long as its objectives are (the predictors and tables are; a
    ``MeasuredObjective`` over a live supernet is not).
    """

    def __init__(
        self,
        space: Any,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        *,
        operators: Operators | None = None,
    ) -> None:
        if not objectives:
            raise ValueError("objectives: at least one is required")
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: names must be unique, got {names}")
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.operators = operators or default_operators(space)
        self._min_arch = space.sample(np.random.default_rng(0), "min")
        self._check_budgets()

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def directions(self) -> list[Direction]:
        return [o.direction for o in self.objectives]

    @property
    def expensive(self) -> list[bool]:
        return [o.expensive for o in self.objectives]

    @property
    def min_arch(self) -> Any:
        """A subnet every budget accepts: the space's min subnet, or the cheapest feasible probed
        subnet where a latency table times the min subnet above a neighbour."""
        return self._min_arch

    def _check_budgets(self) -> None:
        if not self.constraints:
            return
        base = self.candidates([self._min_arch])
        if base.violation[0] == 0:
            return
        rng = np.random.default_rng(0)
        half = PROBE // 2
        zeros = np.zeros(half, dtype=np.int64)
        near, near_genes = self.operators.offspring(
            base.archs, base.genes, zeros, zeros, np.zeros(half, bool), 0.2, rng
        )
        far, far_genes = self.operators.sample(half, rng)
        genes = (
            None
            if near_genes is None or far_genes is None
            else np.concatenate([near_genes, far_genes])
        )
        probe = Candidates.concat([base, self.candidates([*near, *far], genes)])
        feasible = np.flatnonzero(probe.violation == 0)
        if len(feasible):
            relative = probe.limits[feasible] / np.array([c.max_value for c in self.constraints])
            self._min_arch = probe.archs[int(feasible[np.argmin(relative.sum(axis=1))])]
            return
        for k, constraint in enumerate(self.constraints):
            smallest = float(probe.limits[:, k].min())
            if smallest > constraint.max_value:
                raise InfeasibleBudgetError(constraint, smallest)
        # each budget alone is reachable, all of them at once are not
        maxima = np.array([c.max_value for c in self.constraints])
        best = int(np.argmin(probe.violation))
        k = int(np.argmax(probe.limits[best] / maxima))
        raise InfeasibleBudgetError(self.constraints[k], float(probe.limits[best, k]), jointly=True)

    def candidates(self, archs: Sequence[Any], genes: np.ndarray | None = None) -> Candidates:
        """Encode ``archs`` and evaluate the constraints on them (one batch call each)."""
        archs = list(archs)
        if genes is None:
            genes = self.operators.genes_of(archs)
        encodings = self.space.encode_batch(archs)
        keys = [row.tobytes() for row in encodings]
        limits = np.empty((len(archs), len(self.constraints)))
        violation = np.zeros(len(archs))
        for k, constraint in enumerate(self.constraints):
            limits[:, k] = constraint.objective.evaluate(archs, encodings)
            violation += np.maximum(limits[:, k] / constraint.max_value - 1.0, 0.0)
        return Candidates(archs, encodings, keys, limits, violation, genes)

    def evaluate(
        self, candidates: Candidates, *, columns: Sequence[int] | None = None
    ) -> np.ndarray:
        """``[N, M]`` raw objective values (only ``columns`` filled; the rest NaN)."""
        values = np.full((len(candidates), len(self.objectives)), np.nan)
        wanted = range(len(self.objectives)) if columns is None else columns
        for j in wanted:
            values[:, j] = self.objectives[j].evaluate(candidates.archs, candidates.encodings)
        return values

    def with_objectives(self, objectives: Sequence[Objective]) -> SearchProblem:
        """The same space and budgets with other objectives (LINAS's predicted inner problem);
        the budgets were checked already."""
        clone = object.__new__(SearchProblem)
        clone.space, clone.constraints = self.space, self.constraints
        clone.operators = self.operators
        clone.objectives = list(objectives)
        clone._min_arch = self._min_arch
        return clone
