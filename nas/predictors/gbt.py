"""Gradient-boosted trees: fitted by scikit-learn's ``HistGradientBoostingRegressor``, predicted
by a vectorised numpy walk over all trees at once.

Trees capture the interactions a linear model misses (a wide block only helps in a deep unit).
scikit-learn's own ``predict`` costs about a millisecond of setup per call, which a search that
scores 100 archs per generation cannot afford, and its estimators only serialise by pickle; so
the fitted trees are exported as flat node arrays (plain, JSON-ready state) and walked level by
level for every (row, tree) pair in one array operation per level.
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


class GBTPredictor(Predictor):
    """Least-squares gradient boosting; ``max_iter`` trees of at most ``max_leaf_nodes`` leaves."""

    name = "gbt"

    def __init__(
        self,
        *,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 8,
        min_samples_leaf: int = 5,
        l2_regularization: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for field, value, low in (
            ("max_iter", max_iter, 1),
            ("max_leaf_nodes", max_leaf_nodes, 2),
            ("min_samples_leaf", min_samples_leaf, 1),
        ):
            if int(value) < low:
                raise ValueError(f"{field}: must be >= {low}, got {value!r}")
        if not 0 < learning_rate <= 1 or l2_regularization < 0:
            raise ValueError(
                "learning_rate/l2_regularization: need 0 < learning_rate <= 1 and "
                f"l2_regularization >= 0; got {learning_rate}, {l2_regularization}"
            )
        self.max_iter, self.max_leaf_nodes = int(max_iter), int(max_leaf_nodes)
        self.min_samples_leaf = int(min_samples_leaf)
        self.learning_rate, self.l2_regularization = float(learning_rate), float(l2_regularization)
        self.seed = int(seed)
        self.baseline = 0.0
        self._set_nodes(*(np.zeros(0, dtype) for dtype in (np.int64,) * 3 + (np.float64,) * 2))
        self.roots = np.zeros(0, dtype=np.int64)
        self.depth = 0

    def options(self) -> dict[str, Any]:
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
            "seed": self.seed,
        }

    def _set_nodes(
        self,
        feature: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
    ) -> None:
        self.feature, self.left, self.right = feature, left, right
        self.threshold, self.value = threshold, value

    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        from sklearn.ensemble import HistGradientBoostingRegressor

        features, targets = check_training_data(x, y)
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=min(self.min_samples_leaf, max(1, len(targets) // 4)),
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.seed,
        )
        model.fit(features.astype(np.float64), targets)
        self._export([tree for iteration in model._predictors for tree in iteration])
        self.baseline = float(np.asarray(model._baseline_prediction).reshape(-1)[0])
        self.input_dim = features.shape[1]
        return self

    def _export(self, trees: list[Any]) -> None:
        """Concatenate the trees' node arrays; leaves point to themselves so that a fixed
        number of levels walks every tree to its leaf."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("f", "l", "r", "t", "v")}
        roots, offset, depth = [], 0, 0
        for tree in trees:
            nodes = tree.nodes
            own = np.arange(len(nodes), dtype=np.int64) + offset
            leaf = nodes["is_leaf"].astype(bool)
            parts["f"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            parts["l"].append(np.where(leaf, own, nodes["left"].astype(np.int64) + offset))
            parts["r"].append(np.where(leaf, own, nodes["right"].astype(np.int64) + offset))
            parts["t"].append(np.where(leaf, np.inf, nodes["num_threshold"]))
            parts["v"].append(np.where(leaf, nodes["value"], 0.0))
            roots.append(offset)
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        self._set_nodes(*(np.concatenate(parts[k]) for k in ("f", "l", "r", "t", "v")))
        self.roots = np.asarray(roots, dtype=np.int64)
        self.depth = depth

    def predict(self, x: np.ndarray) -> np.ndarray:
        features = check_features(x, self._require_fitted())
        rows = np.arange(features.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (features.shape[0], self.roots.size))
        for _ in range(self.depth):
            go_left = features[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return self.value[node].sum(axis=1) + self.baseline

    def _fitted_state(self) -> dict[str, Any]:
        arrays = {
            "feature": self.feature,
            "left": self.left,
            "right": self.right,
            "threshold": self.threshold,
            "value": self.value,
            "roots": self.roots,
        }
        return {
            **{k: array_to_state(v) for k, v in arrays.items()},
            "baseline": self.baseline,
            "depth": self.depth,
        }

    def _load_fitted_state(self, state: dict[str, Any]) -> None:
        self._set_nodes(
            *(
                array_from_state(state[k])
                for k in ("feature", "left", "right", "threshold", "value")
            )
        )
        self.roots = array_from_state(state["roots"])
        self.baseline, self.depth = float(state["baseline"]), int(state["depth"])
