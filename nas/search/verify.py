"""Final verification: the chosen subnets measured again, beside what the search believed.

Search values are predictions (a predictor's accuracy, a lookup table's latency); the job
stores the measured accuracy on val (from the supernet, BN recalibrated: see
``nas.predictors.SupernetAccuracy`` with ``split="val"``) and, where a latency measurer is
given (host devices: the whole network timed), the measured latency, so the gap is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas.search.results import EvaluatedSubnet

Measure = Callable[[Sequence[Any]], np.ndarray]


class VerifiedSubnet(BaseModel):
    """One chosen subnet: the search's values and the re-measured ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    arch: dict[str, Any]
    predicted: dict[str, float]
    measured_accuracy: float
    accuracy_gap: float | None
    """measured - predicted accuracy (percentage points); None when no accuracy was predicted."""
    measured_latency_ms: float | None = None
    latency_gap_ms: float | None = None


def verify_subnets(
    space: Any,
    subnets: Sequence[EvaluatedSubnet],
    measure_accuracy: Measure,
    *,
    accuracy: str = "accuracy",
    measure_latency: Measure | None = None,
    latency: str | None = None,
) -> list[VerifiedSubnet]:
    """Re-measure ``subnets`` (a search's front or best) and pair each with its predictions.

    ``accuracy``/``latency`` name the objectives holding the predicted values to compare.
    """
    if not subnets:
        return []
    if measure_latency is not None and latency is None:
        raise ValueError("latency: name the latency objective to compare measured latency with")
    archs = [space.arch_from_dict(s.arch) for s in subnets]
    accuracies = np.asarray(measure_accuracy(archs), dtype=np.float64)
    latencies = None if measure_latency is None else np.asarray(measure_latency(archs), float)
    verified = []
    for i, subnet in enumerate(subnets):
        predicted_acc = subnet.values.get(accuracy)
        predicted_lat = None if latency is None else subnet.values.get(latency)
        measured_lat = None if latencies is None else float(latencies[i])
        verified.append(
            VerifiedSubnet(
                id=subnet.id,
                arch=subnet.arch,
                predicted=dict(subnet.values),
                measured_accuracy=float(accuracies[i]),
                accuracy_gap=None
                if predicted_acc is None
                else float(accuracies[i] - predicted_acc),
                measured_latency_ms=measured_lat,
                latency_gap_ms=(
                    None
                    if measured_lat is None or predicted_lat is None
                    else measured_lat - predicted_lat
                ),
            )
        )
    return verified
