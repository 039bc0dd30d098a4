"""Constrained evolution: the best subnet under the budgets (Once-for-All's ``EvolutionFinder``,
arXiv:1908.09791, reproduced in its settings: population 100, 500 generations, parent ratio
0.25, mutation ratio 0.5, per-choice mutation probability 0.1).

Each generation keeps the best ``parent_ratio`` of the population, fills half of it with
mutants of random parents and the rest with uniform crossovers of two random parents; only
feasible children enter (bounded resampling, ``nas.search.variation``). The hot path is one
batch per generation: encode, constraint estimate (latency table) and objective (predictor).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.search.archive import Archive
from nas.search.operators import Offspring
from nas.search.problem import Candidates, SearchProblem
from nas.search.results import SearchResult
from nas.search.strategies.base import ProgressFn, SearchStrategy, finish, needs_budget
from nas.search.variation import MAX_ROUNDS, Breeder, initial_population


class EvolutionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    population_size: int = Field(default=100, ge=4, le=100_000)
    generations: int = Field(default=500, ge=1, le=1_000_000)
    parent_ratio: float = Field(default=0.25, gt=0.0, lt=1.0)
    mutation_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    mutation_prob: float = Field(default=0.1, gt=0.0, le=1.0)
    objective: str | None = Field(default=None, description="Objective to optimise; None: first.")
    max_evaluations: int | None = Field(
        default=None, ge=1, description="Budget of true evaluations (measured objectives)."
    )
    max_rounds: int = Field(default=MAX_ROUNDS, ge=1, le=1000)


class ConstrainedEvolution(SearchStrategy[EvolutionConfig]):
    """Single-objective evolution under constraints; ``result.best`` is the answer."""

    name = "evolution"
    config_type = EvolutionConfig

    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult:
        config = self.config
        started = time.perf_counter()
        column = self._column(problem)
        needs_budget(problem, config.max_evaluations, self.name)
        archive = Archive(problem, config.max_evaluations) if any(problem.expensive) else None
        sign = -1.0 if problem.directions[column] == "maximize" else 1.0
        rng = np.random.default_rng(seed)
        operators = problem.operators

        def cost(candidates: Candidates) -> np.ndarray:  # smaller is better
            if archive is not None:
                return sign * archive.evaluate(candidates)[:, column]
            return sign * problem.evaluate(candidates, columns=[column])[:, column]

        size = config.population_size
        num_parents = max(1, round(size * config.parent_ratio))
        num_mutants = min(size - num_parents, round(size * config.mutation_ratio))
        num_children = size - num_parents - num_mutants
        breeder = Breeder(problem, rng, max_rounds=config.max_rounds)
        population = initial_population(problem, size, rng, distinct=False)
        if archive is not None and archive.remaining is not None:
            population = population.take(np.arange(min(len(population), archive.remaining)))
        fitness = cost(population)
        scored = len(population)
        for generation in range(config.generations):
            order = np.argsort(fitness, kind="stable")[:num_parents]
            parents, parent_fitness = population.take(order), fitness[order]

            def mutants(k: int, parents: Candidates = parents) -> Offspring:
                first = rng.integers(len(parents), size=k)
                no = np.zeros(k, bool)
                return operators.offspring(
                    parents.archs, parents.genes, first, first, no, config.mutation_prob, rng
                )

            def children(k: int, parents: Candidates = parents) -> Offspring:
                first, second = rng.integers(len(parents), size=(2, k))
                yes = np.ones(k, bool)
                return operators.offspring(
                    parents.archs, parents.genes, first, second, yes, 0.0, rng
                )

            offspring = breeder.breed(
                [(num_mutants, mutants), (num_children, children)], fallback=parents
            )
            if archive is not None and _new_networks(archive, offspring) > (archive.remaining or 0):
                break
            population = Candidates.concat([parents, offspring])
            fitness = np.concatenate([parent_fitness, cost(offspring)])
            scored += len(offspring)
            if progress is not None:
                progress(generation + 1, config.generations)
        return finish(
            problem,
            strategy=self.name,
            seed=seed,
            started=started,
            scored=scored,
            archive=archive,
            population=population,
            ranked_by=column,
        )

    def _column(self, problem: SearchProblem) -> int:
        if self.config.objective is None:
            return 0
        if self.config.objective not in problem.names:
            raise ValueError(
                f"objective: {self.config.objective!r} is not an objective of the problem; "
                f"allowed values: {problem.names}"
            )
        return problem.names.index(self.config.objective)


def _new_networks(archive: Archive, candidates: Candidates) -> int:
    return len({k for k in candidates.keys if k not in archive})
