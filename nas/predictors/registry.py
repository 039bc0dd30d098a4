"""Predictors by name, and their (de)serialisation: what a job spec and a job's storage use."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nas.predictors.auto import AutoPredictor
from nas.predictors.base import Predictor
from nas.predictors.gbt import GBTPredictor
from nas.predictors.mlp import MLPPredictor
from nas.predictors.ridge import RidgePredictor

PredictorName = Literal["auto", "gbt", "mlp", "ridge"]
_PREDICTORS: dict[str, type[Predictor]] = {
    "auto": AutoPredictor,
    "gbt": GBTPredictor,
    "mlp": MLPPredictor,
    "ridge": RidgePredictor,
}
PREDICTOR_NAMES: tuple[str, ...] = tuple(sorted(_PREDICTORS))


class PredictorSpec(BaseModel):
    """A predictor as a job spec names it; ``options`` are the class's keyword arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: PredictorName = "auto"
    seed: int = Field(default=0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Predictor:
        return make_predictor(self.kind, seed=self.seed, **self.options)


def _predictor_class(kind: str) -> type[Predictor]:
    cls = _PREDICTORS.get(kind)
    if cls is None:
        raise ValueError(
            f"kind: unknown predictor {kind!r}; allowed values: {list(PREDICTOR_NAMES)}"
        )
    return cls


def make_predictor(kind: str, *, seed: int = 0, **options: Any) -> Predictor:
    """A fresh, unfitted predictor of ``kind``; a bad option raises ``ValueError`` naming it."""
    cls = _predictor_class(kind)
    try:
        return cls(seed=seed, **options)
    except TypeError as exc:  # unknown keyword: say which ones exist
        import inspect

        allowed = [p for p in inspect.signature(cls).parameters if p != "seed"]
        raise ValueError(f"options: {exc}; allowed options for {kind!r}: {allowed}") from None


def predictor_from_state(state: dict[str, Any]) -> Predictor:
    """Rebuild a fitted predictor from ``Predictor.state_dict()``."""
    if not isinstance(state, dict) or "kind" not in state:
        raise ValueError("state: expected a mapping with 'kind', 'options', 'input_dim', 'fitted'")
    return _predictor_class(state["kind"]).from_state(state)


def predictor_to_bytes(predictor: Predictor) -> bytes:
    """Compact UTF-8 JSON of the fitted predictor (what a job stores)."""
    return json.dumps(predictor.state_dict(), separators=(",", ":")).encode()


def predictor_from_bytes(data: bytes) -> Predictor:
    return predictor_from_state(json.loads(data.decode()))
