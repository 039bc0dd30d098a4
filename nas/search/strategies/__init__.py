"""Search strategies behind one interface, by name (what a job spec names)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nas.search.strategies.base import ProgressFn, SearchStrategy
from nas.search.strategies.evolution import ConstrainedEvolution, EvolutionConfig
from nas.search.strategies.linas import Linas, LinasConfig
from nas.search.strategies.nsga2 import NSGA2, NSGA2Config, evolve
from nas.search.strategies.optuna_nsga2 import OptunaNSGA2, OptunaNSGA2Config
from nas.search.strategies.random_search import RandomConfig, RandomSearch

StrategyName = Literal["evolution", "linas", "nsga2", "optuna_nsga2", "random"]
DEFAULT_STRATEGY = "linas"
_STRATEGIES: dict[str, type[SearchStrategy[Any]]] = {
    "evolution": ConstrainedEvolution,
    "linas": Linas,
    "nsga2": NSGA2,
    "optuna_nsga2": OptunaNSGA2,
    "random": RandomSearch,
}
STRATEGY_NAMES: tuple[str, ...] = tuple(sorted(_STRATEGIES))


class StrategySpec(BaseModel):
    """A strategy as a job spec names it; ``options`` are its config's fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: StrategyName = DEFAULT_STRATEGY
    options: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> SearchStrategy[Any]:
        return make_strategy(self.kind, **self.options)


def make_strategy(kind: str, **options: Any) -> SearchStrategy[Any]:
    """A configured strategy; unknown kinds and bad options raise naming the field."""
    cls = _STRATEGIES.get(kind)
    if cls is None:
        raise ValueError(f"kind: unknown strategy {kind!r}; allowed values: {list(STRATEGY_NAMES)}")
    return cls(**options)


__all__ = [
    "DEFAULT_STRATEGY",
    "NSGA2",
    "STRATEGY_NAMES",
    "ConstrainedEvolution",
    "EvolutionConfig",
    "Linas",
    "LinasConfig",
    "NSGA2Config",
    "OptunaNSGA2",
    "OptunaNSGA2Config",
    "ProgressFn",
    "RandomConfig",
    "RandomSearch",
    "SearchStrategy",
    "StrategyName",
    "StrategySpec",
    "evolve",
    "make_strategy",
]
