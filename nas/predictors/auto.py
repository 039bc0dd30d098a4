"""``auto``: the candidate predictor that ranks held-out subnets best, refitted on all of them.

Which model wins depends on the space, the dataset size and how noisy the supernet's accuracies
are (ridge with few samples, trees or the MLP with more), so it is measured, not assumed.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from nas.predictors._arrays import check_features, check_training_data, split_indices
from nas.predictors.base import Predictor
from nas.predictors.metrics import rank_correlations

_MIN_SAMPLES_TO_COMPARE = 10


class AutoPredictor(Predictor):
    """Picks among ``candidates`` by Kendall tau on a seeded held-out ``test_fraction``."""

    name = "auto"

    def __init__(
        self,
        *,
        candidates: tuple[str, ...] | list[str] = ("ridge", "gbt", "mlp"),
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        from nas.predictors.registry import PREDICTOR_NAMES

        super().__init__()
        allowed = [n for n in PREDICTOR_NAMES if n != self.name]
        if not candidates or any(c not in allowed for c in candidates):
            raise ValueError(f"candidates: {list(candidates)!r}; allowed values: {allowed}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
        self.candidates = tuple(candidates)
        self.test_fraction, self.seed = float(test_fraction), int(seed)
        self.chosen: Predictor | None = None
        self.scores: dict[str, float] = {}

    def options(self) -> dict[str, Any]:
        return {
            "candidates": list(self.candidates),
            "test_fraction": self.test_fraction,
            "seed": self.seed,
        }

    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        from nas.predictors.registry import make_predictor

        features, targets = check_training_data(x, y)
        self.scores = {}
        if len(targets) >= _MIN_SAMPLES_TO_COMPARE and len(self.candidates) > 1:
            rng = np.random.default_rng(self.seed)
            train, test = split_indices(len(targets), self.test_fraction, rng)
            for kind in self.candidates:
                model = make_predictor(kind, seed=self.seed).fit(features[train], targets[train])
                tau, _ = rank_correlations(targets[test], model.predict(features[test]))
                self.scores[kind] = tau
            best = max(self.candidates, key=lambda kind: self.scores[kind])  # first on ties
        else:  # too few to compare honestly: the first candidate
            best = self.candidates[0]
        self.chosen = make_predictor(best, seed=self.seed).fit(features, targets)
        self.input_dim = features.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        check_features(x, self._require_fitted())
        assert self.chosen is not None
        return self.chosen.predict(x)

    def _fitted_state(self) -> dict[str, Any]:
        assert self.chosen is not None
        return {"chosen": self.chosen.state_dict(), "scores": dict(self.scores)}

    def _load_fitted_state(self, state: dict[str, Any]) -> None:
        from nas.predictors.registry import predictor_from_state

        self.chosen = predictor_from_state(state["chosen"])
        self.scores = {k: float(v) for k, v in state["scores"].items()}
