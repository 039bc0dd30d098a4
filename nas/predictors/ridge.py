"""Ridge regression in closed form: the fast, strong baseline on one-hot encodings.

With a few hundred measured subnets and ~100 binary features a linear model of per-choice
effects ranks subnets well (it is the additive model that one-hot encodings invite), fits in
a millisecond and so suits LINAS, which refits every round.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from nas.predictors._arrays import (
    array_from_state,
    array_to_state,
    check_features,
    check_training_data,
)
from nas.predictors.base import Predictor


class RidgePredictor(Predictor):
    """``y ~ x w + b`` minimising squared error + ``alpha * |w|^2`` (intercept not penalised)."""

    name = "ridge"

    def __init__(self, *, alpha: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha: must be a positive finite number, got {alpha!r}")
        self.alpha = float(alpha)
        self.seed = int(seed)  # unused (closed form); kept so every predictor takes a seed
        self.weights = np.zeros(0, dtype=np.float64)
        self.bias = 0.0

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "seed": self.seed}

    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        features, targets = check_training_data(x, y)
        xf = features.astype(np.float64)
        x_mean, y_mean = xf.mean(axis=0), targets.mean()
        centred = xf - x_mean
        gram = centred.T @ centred
        gram[np.diag_indices_from(gram)] += self.alpha
        self.weights = np.linalg.solve(gram, centred.T @ (targets - y_mean))
        self.bias = float(y_mean - x_mean @ self.weights)
        self.input_dim = features.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        features = check_features(x, self._require_fitted())
        return features @ self.weights + self.bias

    def _fitted_state(self) -> dict[str, Any]:
        return {"weights": array_to_state(self.weights), "bias": self.bias}

    def _load_fitted_state(self, state: dict[str, Any]) -> None:
        self.weights = array_from_state(state["weights"])
        self.bias = float(state["bias"])
