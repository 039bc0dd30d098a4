"""The hypervolume indicator: the volume of objective space that a front dominates, up to a
reference point. One number that rewards both closeness to the true front and spread along it.

Conventions (``docs/search.md``): every objective is first *normalised* to [0, 1] with fixed
bounds, ``0`` at the ideal end (``lower`` of a minimised objective, ``upper`` of a maximised
one) and ``1`` at the other; the reference point is ``1`` in every coordinate (the nadir of
the bounds), and points are clipped into the box, so a point at a bound adds nothing and the
indicator lies in [0, 1]: the share of the unit box dominated. Fixed bounds (the space's
min/max latency, an accuracy range) make values comparable across runs and strategies.

Exact algorithms: a sweep for two objectives (O(n log n)); for more, slicing along the last
objective and recursing on the others ("Hypervolume by Slicing Objectives", While, Hingston,
Barone and Huband, IEEE TEC 2006), which is exact and fast for the fronts a search keeps
(hundreds of points, 3-4 objectives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas.search.objectives import Direction
from nas.search.pareto import dominance_matrix


def _check(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if points.ndim != 2:
        raise ValueError(f"points: expected an [N, M] matrix, got {points.ndim}-D")
    if points.shape[1] != reference.size:
        raise ValueError(
            f"reference: has {reference.size} coordinates for {points.shape[1]} objectives"
        )
    if not (np.isfinite(points).all() and np.isfinite(reference).all()):
        raise ValueError("points/reference: must be finite")
    return points, reference


def hypervolume(points: np.ndarray, reference: np.ndarray | Sequence[float]) -> float:
    """Exact volume dominated by ``points`` (all objectives minimised) and bounded by
    ``reference``; points not strictly better than the reference in every objective add 0."""
    points, reference = _check(points, np.asarray(reference))
    inside = points[np.all(points < reference, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return _hv(np.unique(inside, axis=0), reference)


def _nondominated(points: np.ndarray) -> np.ndarray:
    if points.shape[0] <= 1:
        return points
    return points[~dominance_matrix(points).any(axis=0)]


def _hv2(points: np.ndarray, reference: np.ndarray) -> float:
    order = np.lexsort((points[:, 1], points[:, 0]))
    x, y = points[order, 0], points[order, 1]
    best_y = np.minimum.accumulate(y)  # staircase: lowest y seen at or left of each x
    right = np.append(x[1:], reference[0])
    return float(np.sum((right - x) * (reference[1] - best_y)))


def hypervolume_gains_2d(
    front: np.ndarray, points: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Hypervolume each of ``points`` would add to the non-dominated 2-D ``front`` (both
    minimised), all at once: the area between each point and the front's staircase."""
    front = front[np.argsort(front[:, 0], kind="stable")] if len(front) else front
    lefts = np.concatenate([[-np.inf], front[:, 0]])
    rights = np.concatenate([front[:, 0], [reference[0]]])
    heights = np.concatenate([[reference[1]], front[:, 1]])
    x = np.minimum(points[..., 0], reference[0])[..., None]
    y = np.minimum(points[..., 1], reference[1])[..., None]
    width = np.clip(np.minimum(rights, reference[0]) - np.maximum(lefts, x), 0.0, None)
    return (width * np.clip(heights - y, 0.0, None)).sum(axis=-1)


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    m = points.shape[1]
    if m == 1:
        return float(reference[0] - points[:, 0].min())
    if m == 2:
        return _hv2(points, reference)
    points = _nondominated(points)
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    levels = np.append(points[:, -1], reference[-1])
    volume = 0.0
    for i in range(points.shape[0]):  # slab between level i and i+1: points 0..i project in
        depth = levels[i + 1] - levels[i]
        if depth > 0:
            volume += depth * _hv(points[: i + 1, :-1], reference[:-1])
    return volume


def normalize(
    values: np.ndarray,
    directions: Sequence[Direction],
    lower: Sequence[float],
    upper: Sequence[float],
) -> np.ndarray:
    """Raw objective values -> [0, 1] minimisation coordinates (0 ideal, 1 worst), clipped."""
    values = np.asarray(values, dtype=np.float64)
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    m = len(directions)
    if values.ndim != 2 or values.shape[1] != m or low.size != m or high.size != m:
        raise ValueError(
            f"values/lower/upper: expected [N, {m}] values and {m} bounds each, got "
            f"{values.shape}, {low.size}, {high.size}"
        )
    if not np.all(high > low):
        raise ValueError(f"upper: every bound must exceed lower; lower={low}, upper={high}")
    scaled = (values - low) / (high - low)
    maximize = np.array([d == "maximize" for d in directions])
    scaled[:, maximize] = 1.0 - scaled[:, maximize]
    return np.clip(scaled, 0.0, 1.0)


def normalized_hypervolume(
    values: np.ndarray,
    directions: Sequence[Direction],
    lower: Sequence[float],
    upper: Sequence[float],
) -> float:
    """Hypervolume of raw ``values`` after ``normalize``, reference point 1: in [0, 1]."""
    scaled = normalize(values, directions, lower, upper)
    return hypervolume(scaled, np.ones(len(directions)))
