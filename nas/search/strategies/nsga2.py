"""NSGA-II (Deb, Pratap, Agarwal and Meyarivan, IEEE TEC 2002), own vectorised code.

Binary tournaments on (front, crowding distance) pick parents; a child is the uniform
crossover of two parents (probability ``crossover_prob``) followed by a per-choice mutation;
parents and children are merged and the best ``population_size`` survive by front, then by
crowding distance. Children that break a budget or repeat a known network are redrawn
(bounded), so every survivor is feasible and distinct. With a measured objective every new
network costs one true evaluation, counted against ``max_evaluations``.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.search.archive import Archive
from nas.search.operators import Offspring
from nas.search.pareto import crowding_distance, non_dominated_sort, survivor_order, to_minimization
from nas.search.problem import Candidates, SearchProblem
from nas.search.results import SearchResult
from nas.search.strategies.base import (
    ProgressFn,
    SearchStrategy,
    finish,
    needs_budget,
    truncate_to_budget,
)
from nas.search.variation import MAX_ROUNDS, Breeder, initial_population


class NSGA2Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    population_size: int = Field(default=50, ge=4, le=100_000)
    generations: int = Field(default=100, ge=1, le=1_000_000)
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0)
    mutation_prob: float = Field(default=0.1, gt=0.0, le=1.0, description="Per choice.")
    max_evaluations: int | None = Field(
        default=None, ge=1, description="Budget of true evaluations (measured objectives)."
    )
    max_rounds: int = Field(default=MAX_ROUNDS, ge=1, le=1000)


def evolve(
    problem: SearchProblem,
    config: NSGA2Config,
    rng: np.random.Generator,
    *,
    initial: Candidates | None = None,
    archive: Archive | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Candidates, np.ndarray, int]:
    """Run the generations; returns (final population, its values, candidates scored).

    Without an ``archive`` every objective is computed directly (cheap objectives only).
    """
    operators = problem.operators
    size = config.population_size
    directions = problem.directions

    def score(candidates: Candidates) -> np.ndarray:
        return problem.evaluate(candidates) if archive is None else archive.evaluate(candidates)

    breeder = Breeder(problem, rng, max_rounds=config.max_rounds, distinct=True)
    population = initial if initial is not None else initial_population(problem, size, rng)
    if archive is not None:
        population = truncate_to_budget(archive, population)
    values = score(population)
    scored = len(population)
    for generation in range(config.generations):
        if archive is not None and archive.exhausted:
            break
        minimised = to_minimization(values, directions)
        ranks = non_dominated_sort(minimised, population.violation)
        crowd = crowding_distance(minimised, ranks)

        def children(
            k: int,
            parents: Candidates = population,
            ranks: np.ndarray = ranks,
            crowd: np.ndarray = crowd,
        ) -> Offspring:
            first = _tournament(ranks, crowd, k, rng)
            second = _tournament(ranks, crowd, k, rng)
            cross = rng.random(k) < config.crossover_prob
            return operators.offspring(
                parents.archs, parents.genes, first, second, cross, config.mutation_prob, rng
            )

        known = archive.keys() if archive is not None else set(population.keys)
        offspring = breeder.breed([(size, children)], fallback=None, exclude=known)
        if archive is not None:
            offspring = truncate_to_budget(archive, offspring)
        if len(offspring) == 0:
            break
        merged = Candidates.concat([population, offspring])
        merged_values = np.concatenate([values, score(offspring)])
        scored += len(offspring)
        keep = survivor_order(to_minimization(merged_values, directions), merged.violation)[:size]
        population, values = merged.take(keep), merged_values[keep]
        if progress is not None:
            progress(generation + 1, config.generations)
    return population, values, scored


def _tournament(
    ranks: np.ndarray, crowd: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` binary-tournament winners: lower front, then larger crowding distance."""
    a, b = rng.integers(len(ranks), size=(2, k))
    a_wins = (ranks[a] < ranks[b]) | ((ranks[a] == ranks[b]) & (crowd[a] >= crowd[b]))
    return np.where(a_wins, a, b)


class NSGA2(SearchStrategy[NSGA2Config]):
    """Multi-objective Pareto set; with a measured objective, every new network is evaluated."""

    name = "nsga2"
    config_type = NSGA2Config

    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult:
        started = time.perf_counter()
        needs_budget(problem, self.config.max_evaluations, self.name)
        rng = np.random.default_rng(seed)
        archive = Archive(problem, self.config.max_evaluations) if any(problem.expensive) else None
        population, values, scored = evolve(
            problem, self.config, rng, archive=archive, progress=progress
        )
        return finish(
            problem,
            strategy=self.name,
            seed=seed,
            started=started,
            scored=scored,
            archive=archive,
            population=population,
            values=values,
        )
