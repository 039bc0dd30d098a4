"""What a search returns: every subnet it scored that matters, its Pareto set and its best
subnet, as pydantic records (what a job stores and the API serves)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.search.objectives import Direction
from nas.search.pareto import non_dominated_sort, to_minimization
from nas.search.problem import Candidates, SearchProblem


class ObjectiveInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    direction: Direction
    unit: str
    expensive: bool


class ConstraintInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: str
    max_value: float
    unit: str


class EvaluatedSubnet(BaseModel):
    """One subnet with its objective values and constraint values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: dict
    id: str
    values: dict[str, float]
    limits: dict[str, float] = Field(description="Value of each constrained objective.")
    feasible: bool
    evaluation: int | None = Field(
        default=None, description="Order of its true evaluation (0 = first); None if predicted."
    )


class SearchResult(BaseModel):
    """The outcome of one strategy run on one problem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str
    seed: int
    objectives: list[ObjectiveInfo]
    constraints: list[ConstraintInfo]
    subnets: list[EvaluatedSubnet]
    pareto: list[int] = Field(description="Indices into subnets: the feasible Pareto set.")
    best: int | None = Field(description="Index of the best feasible subnet by `ranked_by`.")
    ranked_by: str
    num_evaluations: int = Field(description="True evaluations of expensive objectives.")
    num_candidates: int = Field(description="Candidates scored in all, cheap ones included.")
    seconds: float

    def front(self) -> list[EvaluatedSubnet]:
        return [self.subnets[i] for i in self.pareto]

    def best_subnet(self) -> EvaluatedSubnet | None:
        return None if self.best is None else self.subnets[self.best]

    def matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """``[N, M]`` values of ``names`` (default: all objectives) for every subnet."""
        columns = [o.name for o in self.objectives] if names is None else list(names)
        return np.array([[s.values[c] for c in columns] for s in self.subnets]).reshape(
            len(self.subnets), len(columns)
        )


def build_result(
    problem: SearchProblem,
    *,
    strategy: str,
    seed: int,
    candidates: Candidates,
    values: np.ndarray,
    evaluation: Sequence[int | None] | None,
    num_evaluations: int,
    num_candidates: int,
    seconds: float,
    ranked_by: int = 0,
) -> SearchResult:
    """Records for ``candidates`` with their Pareto set and best subnet under the budgets."""
    names = problem.names
    feasible = candidates.violation <= 0
    if len(candidates):
        ranks = non_dominated_sort(
            to_minimization(values, problem.directions), candidates.violation
        )
    else:
        ranks = np.zeros(0, dtype=np.int64)
    pareto = [int(i) for i in np.flatnonzero((ranks == 0) & feasible)]
    best = None
    if feasible.any():
        sign = -1.0 if problem.directions[ranked_by] == "maximize" else 1.0
        score = np.where(feasible, sign * values[:, ranked_by], np.inf)
        best = int(np.argmin(score))
    limit_names = [c.objective.name for c in problem.constraints]
    subnets = [
        EvaluatedSubnet(
            arch=arch.to_dict(),
            id=arch.id,
            values={n: float(v) for n, v in zip(names, values[i], strict=True)},
            limits={n: float(v) for n, v in zip(limit_names, candidates.limits[i], strict=True)},
            feasible=bool(feasible[i]),
            evaluation=None if evaluation is None else evaluation[i],
        )
        for i, arch in enumerate(candidates.archs)
    ]
    return SearchResult(
        strategy=strategy,
        seed=seed,
        objectives=[
            ObjectiveInfo(name=o.name, direction=o.direction, unit=o.unit, expensive=o.expensive)
            for o in problem.objectives
        ],
        constraints=[
            ConstraintInfo(objective=c.objective.name, max_value=c.max_value, unit=c.objective.unit)
            for c in problem.constraints
        ],
        subnets=subnets,
        pareto=pareto,
        best=best,
        ranked_by=names[ranked_by],
        num_evaluations=num_evaluations,
        num_candidates=num_candidates,
        seconds=seconds,
    )
