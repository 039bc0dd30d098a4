"""Hardware-constrained search over a space: problems, objectives, strategies, Pareto fronts.

A ``SearchProblem`` is a space, objectives (accuracy measured or predicted, latency per device,
MACs, params) and budgets (``Constraint``); a strategy (``make_strategy``: ``linas`` by
default, ``evolution``, ``nsga2``, ``optuna_nsga2``, ``random``) runs it to a ``SearchResult``
with the Pareto set and the best subnet. ``pareto`` and ``hypervolume`` are the pure-array
cores. Never imports ``workers`` or ``service``; torch only where a supernet is measured.
"""

from __future__ import annotations

from nas.search.archive import Archive, BudgetExhaustedError
from nas.search.hypervolume import (
    hypervolume,
    hypervolume_gains_2d,
    normalize,
    normalized_hypervolume,
)
from nas.search.objectives import (
    DIRECTIONS,
    Direction,
    LatencyEstimator,
    LatencyObjective,
    MacsObjective,
    MeasuredObjective,
    Objective,
    ParamsObjective,
    PredictedObjective,
)
from nas.search.operators import GenomeOperators, Operators, SpaceOperators, default_operators
from nas.search.pareto import (
    crowding_distance,
    dominance_matrix,
    non_dominated_sort,
    pareto_mask,
    survivor_order,
    to_minimization,
)
from nas.search.problem import Candidates, Constraint, InfeasibleBudgetError, SearchProblem
from nas.search.results import EvaluatedSubnet, SearchResult
from nas.search.strategies import (
    DEFAULT_STRATEGY,
    NSGA2,
    STRATEGY_NAMES,
    ConstrainedEvolution,
    EvolutionConfig,
    Linas,
    LinasConfig,
    NSGA2Config,
    OptunaNSGA2,
    OptunaNSGA2Config,
    RandomConfig,
    RandomSearch,
    SearchStrategy,
    StrategySpec,
    make_strategy,
)
from nas.search.verify import VerifiedSubnet, verify_subnets

__all__ = [
    "DEFAULT_STRATEGY",
    "DIRECTIONS",
    "NSGA2",
    "STRATEGY_NAMES",
    "Archive",
    "BudgetExhaustedError",
    "Candidates",
    "ConstrainedEvolution",
    "Constraint",
    "Direction",
    "EvaluatedSubnet",
    "EvolutionConfig",
    "GenomeOperators",
    "InfeasibleBudgetError",
    "LatencyEstimator",
    "LatencyObjective",
    "Linas",
    "LinasConfig",
    "MacsObjective",
    "MeasuredObjective",
    "NSGA2Config",
    "Objective",
    "Operators",
    "OptunaNSGA2",
    "OptunaNSGA2Config",
    "ParamsObjective",
    "PredictedObjective",
    "RandomConfig",
    "RandomSearch",
    "SearchProblem",
    "SearchResult",
    "SearchStrategy",
    "SpaceOperators",
    "StrategySpec",
    "VerifiedSubnet",
    "crowding_distance",
    "default_operators",
    "dominance_matrix",
    "hypervolume",
    "hypervolume_gains_2d",
    "make_strategy",
    "non_dominated_sort",
    "normalize",
    "normalized_hypervolume",
    "pareto_mask",
    "survivor_order",
    "to_minimization",
    "verify_subnets",
]
