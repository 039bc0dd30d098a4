"""Re-anchoring a table's level to the machine as it is now, from a few networks timed now.

A table's figures hold the machine's speed while it was profiled. A shared host does not keep
that speed: other tenants, clocks, heat and where memory lands move every network by the same
share for minutes to hours, while the ranking of networks holds. A budget in milliseconds is
judged on the level, so a table used long after it was measured meets or misses a budget by
chance. ``measure_anchor`` times a handful of the table's own calibration networks now (spread
over the table's latency range), and the median ratio of their measured to predicted latency
becomes the table's ``anchor``; ``LatencyPredictor`` multiplies every prediction by it. A
ratio, not a line: a handful of points fixes one number well and a slope badly, and a slower
machine slows kernels and dispatch alike. The median, not the mean: one network whose memory
landed badly must not move the rest.

Only a device that can be timed here can be re-anchored (the built-in host devices); a
registered device's table stays as it was uploaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from nas.hardware.table import Anchor, LatencyTable, TableError, now
from nas.hardware.timing import Measurement, TimingPolicy

#: Calibration networks timed for an anchor unless asked otherwise.
ANCHOR_NETWORKS = 8
#: How hard each anchor network is timed: enough repeats for a steady minimum or median of a
#: tiny network, a few seconds in all for ImageNet-size ones.
ANCHOR_TIMING = TimingPolicy(warmup=5, min_repeats=20, max_repeats=500, budget_s=0.3)


def fit_scale(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(median of ``measured / predicted``, interquartile range of the ratios over it)."""
    predicted_array = np.asarray(predicted, dtype=np.float64)
    measured_array = np.asarray(measured, dtype=np.float64)
    if predicted_array.shape != measured_array.shape or predicted_array.ndim != 1:
        raise ValueError("predicted and measured must be 1-d arrays of equal length")
    if len(predicted_array) == 0:
        raise ValueError("an anchor needs at least one network")
    if (predicted_array <= 0).any() or (measured_array <= 0).any():
        raise ValueError("predicted and measured latencies must be positive")
    ratios = measured_array / predicted_array
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return float(median), float((q3 - q1) / median)


def anchor_archs(table: LatencyTable, space: Any, count: int) -> list[Any]:
    """``count`` of ``table``'s calibration networks, evenly spread over their latency range
    (the fastest and the slowest included), so the ratio holds across the range."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    points = table.calibration_points
    if not points:
        raise TableError(f"latency table for {table.describe()} has no calibration networks")
    order = np.argsort([p.block_sum_ms for p in points], kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(points) - 1, min(count, len(points)))))
    return [space.arch_from_dict(points[int(order[int(i)])].arch) for i in picks]


def unanchored(table: LatencyTable) -> LatencyTable:
    """``table`` without its anchor: the level it was profiled at."""
    return table if table.anchor is None else table.model_copy(update={"anchor": None})


def with_anchor(table: LatencyTable, anchor: Anchor) -> LatencyTable:
    """A copy of ``table`` whose predictions are scaled by ``anchor`` (replacing any other)."""
    if anchor.statistic != table.statistic:
        raise ValueError(
            f"anchor: measured with statistic {anchor.statistic!r}, the table adds up "
            f"{table.statistic!r}"
        )
    return table.model_copy(update={"anchor": anchor})


def anchor_from(
    table: LatencyTable,
    archs: Sequence[Any],
    predicted: Sequence[float],
    measured: Sequence[Measurement],
    at: datetime | None = None,
) -> Anchor:
    """The anchor of ``table`` from its (unanchored) predictions for ``archs`` and their
    measurements now."""
    figures = [m.value(table.statistic) for m in measured]
    scale, spread = fit_scale(predicted, figures)
    return Anchor(
        measured_at=at or now(),
        scale=scale,
        statistic=table.statistic,
        archs=[arch.to_dict() for arch in archs],
        predicted_ms=[float(v) for v in predicted],
        measured_ms=figures,
        spread=spread,
    )


def measure_anchor(
    table: LatencyTable,
    *,
    networks: int = ANCHOR_NETWORKS,
    timing: TimingPolicy | None = None,
    runtime: Any = None,
    at: datetime | None = None,
    space: Any = None,
) -> Anchor:
    """Time ``networks`` of ``table``'s calibration networks on its device now (this machine
    must be that device) and fit the scale from the table's predictions to them. ``space`` is
    the space the table was profiled for (default: the preset's, sized for its default data);
    a table sized for other data (channels, classes) needs its own.

    Measured raw, without the table's drift reference: the point is the machine's level now,
    which is what whole subnets timed now (a job's verification, a user's stopwatch) see.
    """
    import search_spaces
    from nas.hardware.predictor import LatencyPredictor
    from nas.hardware.profile import Profiler

    if space is None:
        space = search_spaces.get(table.space, preset=table.preset)
    bare = unanchored(table)
    archs = anchor_archs(bare, space, networks)
    predicted = LatencyPredictor(bare, space).predict(archs)
    profiler = Profiler(table.device, runtime)
    supernet = space.build_supernet().eval()
    found = profiler.measure_networks(space, supernet, archs, timing or ANCHOR_TIMING)
    return anchor_from(bare, archs, predicted, found, at)


def reanchor(
    table: LatencyTable,
    *,
    networks: int = ANCHOR_NETWORKS,
    timing: TimingPolicy | None = None,
    runtime: Any = None,
    space: Any = None,
) -> LatencyTable:
    """``table`` re-anchored to this machine now (``measure_anchor`` then ``with_anchor``)."""
    anchor = measure_anchor(table, networks=networks, timing=timing, runtime=runtime, space=space)
    return with_anchor(table, anchor)
