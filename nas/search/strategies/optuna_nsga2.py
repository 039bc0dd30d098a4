"""Optuna's ``NSGAIISampler`` as a strategy: the same problem through Optuna's ask/tell loop.

Every choice of the space becomes one categorical parameter (``kernel[3]``). Subnets that
break a budget are told as pruned without being measured (NSGA-II in Optuna learns only from
complete trials), and a network measured before is answered from the archive, so the budget
counts distinct true evaluations exactly as for the other strategies. ``max_trials`` bounds
the loop when most proposals are infeasible or repeats.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nas.search.archive import Archive
from nas.search.problem import SearchProblem
from nas.search.results import SearchResult
from nas.search.strategies.base import ProgressFn, SearchStrategy, finish, needs_budget


class OptunaNSGA2Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    population_size: int = Field(default=50, ge=2, le=100_000)
    max_evaluations: int | None = Field(default=None, ge=1, le=10_000_000)
    max_trials: int | None = Field(
        default=None, ge=1, description="Asked trials in all; None: 20 x max_evaluations."
    )
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0)
    mutation_prob: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Per parameter; None: Optuna's 1 / #params."
    )


def _genes(space: Any, template: dict[str, Any]) -> list[tuple[str, int | None, list[int]]]:
    """(field, position or None for a scalar field, allowed values) for every choice."""
    genes: list[tuple[str, int | None, list[int]]] = []
    for field, positions in space.choices().items():
        scalar = not isinstance(template[field], list)
        for position, allowed in enumerate(positions):
            genes.append((field, None if scalar else position, list(allowed)))
    return genes


def _label(field: str, position: int | None) -> str:
    return field if position is None else f"{field}[{position}]"


def _params(data: dict[str, Any], genes: list[tuple[str, int | None, list[int]]]) -> dict[str, Any]:
    """Optuna parameters of an arch dict."""
    return {
        _label(field, position): data[field] if position is None else data[field][position]
        for field, position, _ in genes
    }


class OptunaNSGA2(SearchStrategy[OptunaNSGA2Config]):
    name = "optuna_nsga2"
    config_type = OptunaNSGA2Config

    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult:
        import optuna
        from optuna.trial import TrialState

        started = time.perf_counter()
        config = self.config
        needs_budget(problem, config.max_evaluations, self.name)
        budget = config.max_evaluations or 20 * config.population_size
        max_trials = config.max_trials or 20 * budget
        archive = Archive(problem, budget)
        template = problem.min_arch.to_dict()
        genes = _genes(problem.space, template)
        sampler = optuna.samplers.NSGAIISampler(
            population_size=config.population_size,
            crossover_prob=config.crossover_prob,
            mutation_prob=config.mutation_prob,
            seed=seed,
        )
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(directions=problem.directions, sampler=sampler)
            for extreme in ("min", "max"):  # the anchors every strategy starts from
                arch = problem.space.sample(np.random.default_rng(seed), extreme)
                study.enqueue_trial(_params(arch.to_dict(), genes))
            for _ in range(max_trials):
                if archive.exhausted:
                    break
                trial = study.ask()
                arch = self._suggest(problem, trial, template, genes)
                candidates = None if arch is None else problem.candidates([arch])
                if candidates is None or candidates.violation[0] > 0:
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                values = archive.evaluate(candidates)[0]
                study.tell(trial, values.tolist())
                if progress is not None:
                    progress(len(archive), budget)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return finish(
            problem,
            strategy=self.name,
            seed=seed,
            started=started,
            scored=len(study.trials),
            archive=archive,
        )

    @staticmethod
    def _suggest(
        problem: SearchProblem,
        trial: Any,
        template: dict[str, Any],
        genes: list[tuple[str, int | None, list[int]]],
    ) -> Any | None:
        data = {k: (list(v) if isinstance(v, list) else v) for k, v in template.items()}
        for field, position, allowed in genes:
            value = trial.suggest_categorical(_label(field, position), allowed)
            if position is None:
                data[field] = value
            else:
                data[field][position] = value
        try:
            return problem.space.arch_from_dict(data)
        except (ValidationError, ValueError):  # a combination the space forbids
            return None
