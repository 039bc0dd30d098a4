"""The predictor contract: ``fit`` and ``predict`` on batches of encoded archs.

Contract (every implementation, checked by ``tests/test_predictors.py``):

- ``fit(x, y)`` takes ``[N, D]`` encodings (``space.encode_batch``) and ``N`` targets, returns
  ``self``; refitting starts from scratch. Given the constructor's ``seed`` the fitted model is
  the same on every run.
- ``predict(x)`` returns a float64 vector of length ``N``; it is the search's hot path, so it is
  plain numpy (no torch, no per-call setup) and safe to call from several threads at once.
- ``state_dict()`` is JSON-ready (str, int, float, lists, dicts); ``from_state`` rebuilds an
  identical predictor without the training code's libraries (no pickles: a stored predictor
  never executes code when loaded).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Self

import numpy as np


class NotFittedError(RuntimeError):
    """``predict`` or ``state_dict`` before ``fit``."""


class Predictor(abc.ABC):
    """Regresses a scalar (accuracy, usually) from arch encodings."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.input_dim: int | None = None

    @property
    def is_fitted(self) -> bool:
        return self.input_dim is not None

    def _require_fitted(self) -> int:
        if self.input_dim is None:
            raise NotFittedError(f"{self.name} predictor: call fit(x, y) first")
        return self.input_dim

    @abc.abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        """Fit on ``[N, D]`` encodings and ``N`` targets."""

    @abc.abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float64 predictions for ``[N, D]`` encodings."""

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready): ``type(self)(**options())`` is a fresh
        unfitted copy."""

    @abc.abstractmethod
    def _fitted_state(self) -> dict[str, Any]:
        """The learned parameters as plain types."""

    @abc.abstractmethod
    def _load_fitted_state(self, state: dict[str, Any]) -> None: ...

    def unfitted_copy(self) -> Self:
        return type(self)(**self.options())

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "options", "input_dim", "fitted"}``, all plain types."""
        return {
            "kind": self.name,
            "options": self.options(),
            "input_dim": self._require_fitted(),
            "fitted": self._fitted_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("kind") != cls.name:
            raise ValueError(f"kind: state is for {state.get('kind')!r}, not {cls.name!r}")
        predictor = cls(**state["options"])
        predictor._load_fitted_state(state["fitted"])
        predictor.input_dim = int(state["input_dim"])
        return predictor
