"""What a search optimises: objectives evaluated on batches of archs.

An objective is a name, a direction, a unit and a batch function. *Cheap* objectives (MACs,
params, latency from a lookup table, predicted accuracy) are computed for every candidate;
*expensive* ones (accuracy measured from the supernet) are what a search's budget of true
evaluations counts, and what LINAS replaces by a predictor inside its loop.

Latency plugs in through ``LatencyEstimator``: anything with a batch ``predict(archs)``
returning milliseconds, such as ``nas.hardware.LatencyPredictor`` over a device's table.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")


class Objective(abc.ABC):
    """One column of a search's objective matrix.

    ``evaluate(archs, encodings)`` gets the archs and ``space.encode_batch(archs)`` (computed
    once per batch by the problem, so predictors do not re-encode) and returns ``N`` floats.
    """

    name: str
    direction: Direction
    unit: str
    expensive: bool = False

    @abc.abstractmethod
    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, direction={self.direction!r})"


class MacsObjective(Objective):
    """Multiply-accumulates per image, from the space's analytic count (minimise)."""

    direction: Direction = "minimize"
    unit = "MACs"

    def __init__(self, space: Any, *, name: str = "macs") -> None:
        self.space, self.name = space, name

    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray:
        return self.space.complexity_batch(archs)[0].astype(np.float64)


class ParamsObjective(Objective):
    """Parameter count (minimise)."""

    direction: Direction = "minimize"
    unit = "params"

    def __init__(self, space: Any, *, name: str = "params") -> None:
        self.space, self.name = space, name

    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray:
        return self.space.complexity_batch(archs)[1].astype(np.float64)


@runtime_checkable
class LatencyEstimator(Protocol):
    """Latency of archs on one device, in milliseconds, a whole batch per call
    (``nas.hardware.LatencyPredictor`` is one)."""

    def predict(self, archs: Sequence[Any]) -> np.ndarray: ...


class LatencyObjective(Objective):
    """Latency on one device (minimise); a search has one per target device."""

    direction: Direction = "minimize"
    unit = "ms"

    def __init__(self, estimator: LatencyEstimator, *, device: str) -> None:
        if not isinstance(estimator, LatencyEstimator):
            raise TypeError("estimator: needs a `predict(archs) -> milliseconds` method")
        if not device:
            raise ValueError("device: the name of the device the estimator predicts for")
        self.estimator, self.device = estimator, device
        self.name = f"latency:{device}"

    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(archs), dtype=np.float64)


class PredictedObjective(Objective):
    """A fitted ``nas.predictors.Predictor`` on the encodings: cheap stand-in for a measured
    objective (predicted accuracy by default).

    ``bounds`` clip predictions to the objective's possible range: a search maximising a
    regressor finds exactly the archs it extrapolates furthest for, and an accuracy of 103%
    should rank no higher than 100%.
    """

    def __init__(
        self,
        predictor: Any,
        *,
        name: str = "accuracy",
        direction: Direction = "maximize",
        unit: str = "%",
        bounds: tuple[float, float] | None = (0.0, 100.0),
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: {direction!r}; allowed values: {list(DIRECTIONS)}")
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"bounds: need low < high, got {bounds!r}")
        self.predictor, self.name, self.direction, self.unit = predictor, name, direction, unit
        self.bounds = bounds

    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray:
        values = self.predictor.predict(encodings)
        return values if self.bounds is None else np.clip(values, *self.bounds)


class MeasuredObjective(Objective):
    """A true, expensive evaluation (``nas.predictors.SupernetAccuracy``, a measured latency,
    a lookup in a ground-truth table); a search's budget counts these calls per arch."""

    expensive = True

    def __init__(
        self,
        measure: Callable[[Sequence[Any]], np.ndarray],
        *,
        name: str = "accuracy",
        direction: Direction = "maximize",
        unit: str = "%",
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: {direction!r}; allowed values: {list(DIRECTIONS)}")
        self.measure, self.name, self.direction, self.unit = measure, name, direction, unit

    def evaluate(self, archs: Sequence[Any], encodings: np.ndarray) -> np.ndarray:
        return np.asarray(self.measure(archs), dtype=np.float64)
