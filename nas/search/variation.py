"""Bounded generation of feasible candidates: the only place that draws new archs.

A budget close to the min subnet makes most random archs infeasible; sampling "until it fits"
could then run for ever. Every function here draws at most ``max_rounds`` batches; what is
still missing afterwards is filled from a known-feasible fallback (the parents, or the min
subnet, which the problem has already checked), so a search always finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from math import ceil

import numpy as np

from nas.search.operators import Offspring
from nas.search.problem import Candidates, SearchProblem

MAX_ROUNDS = 10


Maker = Callable[[int], Offspring]
"""Makes ``k`` new archs (and their genomes) in one call."""


class Breeder:
    """Draws feasible children for several groups (mutants, crossovers) in as few batches as
    possible: one ``problem.candidates`` call per round for all groups, each group
    oversampled by the share of its children that met the budgets so far.

    Batch estimators (latency tables, MACs) cost mostly per call rather than per arch, and a
    population that presses against a budget loses about half its children to it, so
    guessing the acceptance rate turns several small batches per generation into one.
    """

    def __init__(
        self,
        problem: SearchProblem,
        rng: np.random.Generator,
        *,
        max_rounds: int = MAX_ROUNDS,
        distinct: bool = False,
    ) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds: must be >= 1, got {max_rounds}")
        self.problem, self.rng = problem, rng
        self.max_rounds, self.distinct = max_rounds, distinct
        self._rates: dict[int, float] = {}

    def breed(
        self,
        groups: Sequence[tuple[int, Maker]],
        *,
        fallback: Candidates | None,
        exclude: Collection[bytes] | None = None,
    ) -> Candidates:
        """``n`` feasible children of every ``(n, make)`` group, groups in order.

        ``distinct`` (constructor) also rejects networks in ``exclude`` or drawn earlier in
        this call. After ``max_rounds`` rounds a group's shortfall is filled with random rows
        of ``fallback`` (repeats allowed), or left short when there is none.
        """
        kept: list[list[Candidates]] = [[] for _ in groups]
        have = [0] * len(groups)
        seen: set[bytes] = set(exclude or ()) if self.distinct else set()
        for _ in range(self.max_rounds):
            plan = []
            for g, (n, make) in enumerate(groups):
                need = n - have[g]
                if need > 0:
                    rate = self._rates.get(g, 1.0)
                    plan.append((g, make, min(4 * need + 4, ceil(need / rate))))
            if not plan:
                break
            made = [make(count) for _, make, count in plan]
            archs = [a for group_archs, _ in made for a in group_archs]
            genes = None
            if all(g is not None for _, g in made):
                genes = np.concatenate([g for _, g in made])  # type: ignore[misc]
            batch = self.problem.candidates(archs, genes)
            ok = batch.violation <= 0
            start = 0
            for g, _, count in plan:
                chosen = self._accept(batch, ok, start, count, groups[g][0] - have[g], seen)
                observed = ok[start : start + count].mean()
                self._rates[g] = max(0.05, 0.5 * self._rates.get(g, 1.0) + 0.5 * observed)
                if chosen:
                    kept[g].append(batch.take(np.array(chosen)))
                    have[g] += len(chosen)
                start += count
        parts: list[Candidates] = []
        for g, (n, _) in enumerate(groups):
            parts += kept[g]
            if have[g] < n and fallback is not None and len(fallback) > 0:
                parts.append(fallback.take(self.rng.integers(0, len(fallback), size=n - have[g])))
        if not parts:
            return self.problem.candidates([])
        return parts[0] if len(parts) == 1 else Candidates.concat(parts)

    def _accept(
        self,
        batch: Candidates,
        ok: np.ndarray,
        start: int,
        count: int,
        need: int,
        seen: set[bytes],
    ) -> list[int]:
        chosen: list[int] = []
        for i in range(start, start + count):
            if len(chosen) == need:
                break
            if not ok[i]:
                continue
            if self.distinct:
                if batch.keys[i] in seen:
                    continue
                seen.add(batch.keys[i])
            chosen.append(i)
        return chosen


def breed(
    problem: SearchProblem,
    n: int,
    make: Maker,
    rng: np.random.Generator,
    *,
    fallback: Candidates | None,
    exclude: Collection[bytes] | None = None,
    distinct: bool = False,
    max_rounds: int = MAX_ROUNDS,
) -> Candidates:
    """``n`` feasible candidates from ``make``: a one-off ``Breeder`` with one group."""
    breeder = Breeder(problem, rng, max_rounds=max_rounds, distinct=distinct)
    return breeder.breed([(n, make)], fallback=fallback, exclude=exclude)


def sample_feasible(
    problem: SearchProblem,
    n: int,
    rng: np.random.Generator,
    *,
    exclude: Collection[bytes] | None = None,
    distinct: bool = True,
    max_rounds: int = MAX_ROUNDS,
) -> Candidates:
    """``n`` random feasible candidates; near-min mutants and then the min subnet fill in
    when random draws keep missing the budget."""
    operators = problem.operators
    found = breed(
        problem,
        n,
        lambda k: operators.sample(k, rng),
        rng,
        fallback=None,
        exclude=exclude,
        distinct=distinct,
        max_rounds=max_rounds,
    )
    if len(found) >= n:
        return found
    base = problem.candidates([problem.min_arch])

    def near_min(k: int) -> Offspring:
        zeros = np.zeros(k, dtype=np.int64)
        return operators.offspring(
            base.archs, base.genes, zeros, zeros, np.zeros(k, bool), 0.1, rng
        )

    excluded = set(exclude or ()) | set(found.keys)
    extra = breed(
        problem,
        n - len(found),
        near_min,
        rng,
        fallback=None if distinct else base,
        exclude=excluded,
        distinct=distinct,
        max_rounds=max_rounds,
    )
    parts = [p for p in (found, extra) if len(p) > 0]
    missing = n - len(found) - len(extra)
    if missing > 0 and (not distinct or base.keys[0] not in excluded | set(extra.keys)):
        parts.append(base.take(np.zeros(1 if distinct else missing, dtype=np.int64)))
    return Candidates.concat(parts) if parts else found


def initial_population(
    problem: SearchProblem,
    n: int,
    rng: np.random.Generator,
    *,
    exclude: Collection[bytes] | None = None,
    distinct: bool = True,
    max_rounds: int = MAX_ROUNDS,
) -> Candidates:
    """The space's min and max subnets (where feasible) and ``n - 2`` random feasible ones.

    The two extremes anchor both ends of every front (the sandwich rule trains them best,
    and a budget near either end is common), so every strategy starts from them.
    """
    space = problem.space
    extremes = problem.candidates([space.sample(rng, "min"), space.sample(rng, "max")])
    keep, seen = [], set(exclude or ())
    for i, key in enumerate(extremes.keys):
        if extremes.violation[i] <= 0 and key not in seen and len(keep) < n:
            keep.append(i)
            seen.add(key)
    anchors = extremes.take(np.array(keep, dtype=np.int64))
    rest = sample_feasible(
        problem, n - len(anchors), rng, exclude=seen, distinct=distinct, max_rounds=max_rounds
    )
    if len(anchors) == 0:
        return rest
    return Candidates.concat([anchors, rest]) if len(rest) else anchors
