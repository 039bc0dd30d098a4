"""Pareto ranking on objective matrices: non-dominated sorting and crowding distance (NSGA-II,
Deb et al. 2002), vectorised over all pairs at once.

Every function takes ``values`` as an ``[N, M]`` matrix in which *smaller is better* in every
column; ``to_minimization`` turns a mix of minimised and maximised objectives into that form.
Constraints follow Deb's constrained domination: a feasible point beats an infeasible one, and
of two infeasible points the one with the smaller total violation wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas.search.objectives import Direction


def to_minimization(values: np.ndarray, directions: Sequence[Direction]) -> np.ndarray:
    """Negate the maximised columns, so that smaller is better everywhere."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(directions):
        raise ValueError(
            f"values: expected an [N, {len(directions)}] matrix, got shape {matrix.shape}"
        )
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return matrix * signs


def dominance_matrix(values: np.ndarray) -> np.ndarray:
    """``D[i, j]``: point ``i`` dominates point ``j`` (no worse everywhere, better somewhere)."""
    a, b = values[:, None, :], values[None, :, :]
    return np.all(a <= b, axis=2) & np.any(a < b, axis=2)


def non_dominated_sort(values: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Front index of every point (0 = non-dominated).

    Feasible points (``violation == 0``) are sorted by Pareto dominance; infeasible points
    come after all of them, one front per distinct violation, smallest first.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    ranks = np.full(n, -1, dtype=np.int64)
    feasible = np.ones(n, bool) if violation is None else np.asarray(violation) <= 0
    index = np.flatnonzero(feasible)
    dominated_by = dominance_matrix(values[index])
    counts = dominated_by.sum(axis=0)
    remaining = np.ones(index.size, bool)
    front = 0
    while remaining.any():
        current = remaining & (counts == 0)
        ranks[index[current]] = front
        remaining &= ~current
        counts = counts - dominated_by[current].sum(axis=0)
        front += 1
    if not feasible.all():
        infeasible = np.flatnonzero(~feasible)
        _, levels = np.unique(np.asarray(violation)[infeasible], return_inverse=True)
        ranks[infeasible] = front + levels
    return ranks


def crowding_distance(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of every point within its own front (inf at a front's ends).

    Each objective's gap is divided by that front's range in the objective, so objectives in
    different units (ms, %) count alike.
    """
    values = np.asarray(values, dtype=np.float64)
    distance = np.zeros(values.shape[0])
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        if members.size <= 2:
            distance[members] = np.inf
            continue
        sub = values[members]
        order = np.argsort(sub, axis=0, kind="stable")
        ordered = np.take_along_axis(sub, order, axis=0)
        span = ordered[-1] - ordered[0]
        gaps = np.zeros_like(sub)
        safe = np.where(span > 0, span, 1.0)
        inner = (ordered[2:] - ordered[:-2]) / safe
        np.put_along_axis(gaps, order[1:-1], inner, axis=0)
        np.put_along_axis(gaps, order[[0, -1]], np.inf, axis=0)
        distance[members] = gaps.sum(axis=1)
    return distance


def pareto_mask(values: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """True for the feasible non-dominated points (duplicates of a front point stay in)."""
    feasible = np.ones(len(values), bool) if violation is None else np.asarray(violation) <= 0
    return (non_dominated_sort(values, violation) == 0) & feasible


def survivor_order(values: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Indices from best to worst by (front, larger crowding distance), NSGA-II's order."""
    ranks = non_dominated_sort(values, violation)
    crowd = crowding_distance(values, ranks)
    return np.lexsort((-crowd, ranks))
