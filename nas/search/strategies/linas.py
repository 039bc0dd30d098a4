"""LINAS, lightweight iterative NAS (Cummings et al., "Accelerating Neural Architecture
Exploration Across Modalities Using Genetic Algorithms", GECCO 2022; Intel DyNAS-T).

Measured objectives are expensive, predicted ones nearly free. Each round refits a predictor
per measured objective on everything measured so far, runs a full NSGA-II on the *predicted*
problem (cheap objectives such as latency tables stay exact), and measures only the few most
promising new subnets: by default those with the greatest *expected* gain in hypervolume over
the measured front, the prediction's own measured error taken as its spread; or, as DyNAS-T,
the best fronts of the final population spread by crowding distance (``selection="front"``);
or the greatest gain of the predicted point alone (``"hypervolume"``). The predictor
improves where the search is heading, so true evaluations are spent near the front. This is
the default strategy for new jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.predictors.registry import PredictorSpec
from nas.search.archive import Archive
from nas.search.hypervolume import hypervolume, hypervolume_gains_2d
from nas.search.objectives import Objective, PredictedObjective
from nas.search.pareto import pareto_mask, survivor_order, to_minimization
from nas.search.problem import Candidates, SearchProblem
from nas.search.results import SearchResult
from nas.search.strategies.base import ProgressFn, SearchStrategy, finish
from nas.search.strategies.nsga2 import NSGA2Config, evolve
from nas.search.variation import MAX_ROUNDS, breed, initial_population, sample_feasible


class LinasConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_evaluations: int = Field(default=200, ge=2, le=10_000_000)
    initial_evaluations: int = Field(
        default=20, ge=2, le=1_000_000, description="Random subnets measured before round 1."
    )
    evaluations_per_round: int = Field(
        default=5, ge=1, le=1_000_000, description="Fewer per round: more refits, better picks."
    )
    population_size: int = Field(default=50, ge=4, le=100_000, description="Inner NSGA-II.")
    generations: int = Field(default=20, ge=1, le=100_000, description="Inner NSGA-II, per round.")
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0)
    mutation_prob: float = Field(default=0.1, gt=0.0, le=1.0)
    predictor: PredictorSpec = Field(
        default_factory=lambda: PredictorSpec(kind="gbt"),
        description="Refitted every round; trees ranked noisy supernet accuracies best.",
    )
    selection: Literal["front", "hypervolume", "expected_hypervolume"] = Field(
        default="expected_hypervolume",
        description=(
            "What to measure each round: NSGA-II order, largest predicted hypervolume gain, "
            "or largest gain expected under the predictor's own measured error."
        ),
    )
    pool_samples: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="expected_hypervolume: random unmeasured networks added to the pool.",
    )
    max_rounds: int = Field(default=MAX_ROUNDS, ge=1, le=1000)


class Linas(SearchStrategy[LinasConfig]):
    name = "linas"
    config_type = LinasConfig

    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult:
        started = time.perf_counter()
        config = self.config
        measured = [j for j, o in enumerate(problem.objectives) if o.expensive]
        if not measured:
            raise ValueError(
                "objectives: LINAS needs a measured objective to predict; with cheap objectives "
                "only, use strategy 'nsga2'"
            )
        rng = np.random.default_rng(seed)
        archive = Archive(problem, config.max_evaluations)
        first = min(config.initial_evaluations, config.max_evaluations)
        archive.evaluate(initial_population(problem, first, rng, max_rounds=config.max_rounds))
        inner = NSGA2Config(
            population_size=config.population_size,
            generations=config.generations,
            crossover_prob=config.crossover_prob,
            mutation_prob=config.mutation_prob,
            max_rounds=config.max_rounds,
        )
        scored = len(archive)
        round_index = 0
        errors: list[np.ndarray] = []  # predicted - measured, for networks chosen unmeasured
        while not archive.exhausted:
            round_index += 1
            known, values = archive.candidates(), archive.values()
            predicted = self._predicted_problem(
                problem, known, values, measured, seed + round_index
            )
            best = survivor_order(to_minimization(values, problem.directions), known.violation)
            population, guesses, inner_scored = evolve(
                predicted, inner, rng, initial=known.take(best[: config.population_size])
            )
            scored += inner_scored
            wanted = min(config.evaluations_per_round, archive.remaining or 0)
            if config.selection == "expected_hypervolume":
                sigma = _error_scale(errors, values, measured)
                chosen = self._choose_expected(
                    problem, predicted, archive, population, guesses, sigma, wanted, rng
                )
            else:
                chosen = self._choose(problem, archive, population, guesses, wanted, rng)
            if len(chosen) == 0:  # every feasible network it can reach is measured
                break
            guessed = predicted.evaluate(chosen)
            errors.append(guessed - archive.evaluate(chosen))
            if progress is not None:
                progress(len(archive), config.max_evaluations)
        return finish(
            problem,
            strategy=self.name,
            seed=seed,
            started=started,
            scored=scored,
            archive=archive,
        )

    def _predicted_problem(
        self,
        problem: SearchProblem,
        known: Candidates,
        values: np.ndarray,
        measured: list[int],
        seed: int,
    ) -> SearchProblem:
        """The problem with each measured objective replaced by a freshly fitted predictor."""
        objectives: list[Objective] = list(problem.objectives)
        for j in measured:
            spec = self.config.predictor.model_copy(update={"seed": seed})
            predictor = spec.build().fit(known.encodings, values[:, j])
            original = problem.objectives[j]
            objectives[j] = PredictedObjective(
                predictor,
                name=original.name,
                direction=original.direction,
                unit=original.unit,
                bounds=(0.0, 100.0) if original.unit == "%" else None,
            )
        return problem.with_objectives(objectives)

    def _choose(
        self,
        problem: SearchProblem,
        archive: Archive,
        population: Candidates,
        guesses: np.ndarray,
        wanted: int,
        rng: np.random.Generator,
    ) -> Candidates:
        """The ``wanted`` most promising unmeasured networks of the predicted population.

        ``hypervolume`` selection takes, one at a time, the candidate whose predicted point
        adds the most hypervolume to the *measured* front (then counts it as if measured):
        candidates that would only extend the front where it is already good, or beyond
        where anything was ever measured, wait. ``front`` selection takes NSGA-II's order
        (DyNAS-T). Either way NSGA-II's order ranks those that add nothing, and random
        feasible networks make up a shortfall (the predictor has converged on measured ones).
        """
        minimised = to_minimization(guesses, problem.directions)
        order = survivor_order(minimised, population.violation)
        fresh = _unmeasured(population, archive, order)
        taken = {population.keys[i] for i in fresh}
        chosen = fresh[:wanted]
        if self.config.selection == "hypervolume" and fresh:
            measured = to_minimization(archive.values(), problem.directions)
            feasible = archive.candidates().violation <= 0
            chosen = _greedy_hypervolume(measured[feasible], minimised[fresh], wanted)
            chosen = [fresh[i] for i in chosen]
            chosen += [i for i in fresh if i not in set(chosen)][: wanted - len(chosen)]
        picked = population.take(np.array(chosen, dtype=np.int64))
        if len(picked) < wanted:
            extra = sample_feasible(
                problem, wanted - len(picked), rng, exclude=set(archive.keys()) | taken
            )
            picked = Candidates.concat([picked, extra]) if len(picked) else extra
        return picked

    def _choose_expected(
        self,
        problem: SearchProblem,
        predicted: SearchProblem,
        archive: Archive,
        population: Candidates,
        guesses: np.ndarray,
        sigma: np.ndarray,
        wanted: int,
        rng: np.random.Generator,
    ) -> Candidates:
        """The ``wanted`` unmeasured networks with the largest *expected* hypervolume gain.

        A supernet accuracy measured on a small val set is mostly noise between networks of
        similar size: the front's best points are the lucky ones, and a predictor (which
        learns the mean) ranks them in mid-pack. So each candidate's measured objectives are
        taken as Gaussian around the prediction, with the predictor's own error on the
        networks it chose before they were measured as the spread, and the gain averaged over
        common draws. Networks that could plausibly beat the front get measured, not only
        those whose mean does. The pool is the inner NSGA-II's population plus
        ``pool_samples`` random unmeasured networks; after each pick its predicted point
        joins the front (the "believer" batch heuristic), so a batch spreads out.
        """
        keep = _unmeasured(population, archive, range(len(population)))
        taken = set(archive.keys()) | {population.keys[i] for i in keep}
        parts, means = [population.take(np.array(keep, dtype=np.int64))], [guesses[keep]]
        if self.config.pool_samples:  # random draws only, a few rounds: bounded when tight
            extra = breed(
                problem,
                self.config.pool_samples,
                lambda k: problem.operators.sample(k, rng),
                rng,
                fallback=None,
                exclude=taken,
                distinct=True,
                max_rounds=_POOL_ROUNDS,
            )
            if len(extra):
                parts.append(extra)
                means.append(predicted.evaluate(extra))
        pool = Candidates.concat(parts)
        if len(pool) == 0:
            return pool
        mean = to_minimization(np.concatenate(means), problem.directions)
        measured = to_minimization(archive.values(), problem.directions)
        measured = measured[archive.candidates().violation <= 0]
        if mean.shape[1] == 2:
            draws = rng.standard_normal((_DRAWS, 2)) * sigma
            chosen = _greedy_hypervolume(measured, mean, wanted, draws)
        else:  # exact hypervolume beyond 2-D costs ~1 ms a call: one optimistic point each
            hopeful = mean - sigma
            shortlist = survivor_order(hopeful, pool.violation)[:_SHORTLIST]
            picked = _greedy_hypervolume(measured, hopeful[shortlist], wanted)
            chosen = [int(shortlist[i]) for i in picked]
        if len(chosen) < wanted:  # nothing left that could add: the best predicted, in order
            order, already = survivor_order(mean, pool.violation), set(chosen)
            chosen += [int(i) for i in order if int(i) not in already][: wanted - len(chosen)]
        return pool.take(np.array(chosen, dtype=np.int64))


_DRAWS = 64  # common normal draws per candidate for the expected gain (2 objectives)
_SHORTLIST = 30  # more objectives: candidates whose optimistic point is scored
_POOL_ROUNDS = 3  # draws for the pool: under a tight budget a smaller pool, not a long wait


def _error_scale(errors: list[np.ndarray], values: np.ndarray, measured: list[int]) -> np.ndarray:
    """Per-objective spread of a prediction: the RMS of the last 100 out-of-sample errors
    (before any, the spread of the measured values); 0 for exact (cheap) objectives."""
    sigma = np.zeros(values.shape[1])
    recent = np.concatenate(errors)[-100:] if errors else None
    for j in measured:
        if recent is not None and len(recent) >= 5:
            sigma[j] = float(np.sqrt(np.mean(recent[:, j] ** 2)))
        else:
            sigma[j] = float(np.std(values[:, j]))
    return sigma


def _unmeasured(population: Candidates, archive: Archive, order: Iterable[int]) -> list[int]:
    """Indices of ``population``'s feasible networks not yet measured, in ``order``, each
    network once."""
    fresh: list[int] = []
    seen: set[bytes] = set()
    for i in order:
        key = population.keys[i]
        if key not in archive and key not in seen and population.violation[i] <= 0:
            fresh.append(int(i))
            seen.add(key)
    return fresh


def _greedy_hypervolume(
    measured: np.ndarray, candidates: np.ndarray, wanted: int, draws: np.ndarray | None = None
) -> list[int]:
    """Indices of up to ``wanted`` candidates, each adding the most hypervolume to the front
    of ``measured`` plus those chosen before it; stops when none adds any. Objectives are
    scaled by the range of all points, the reference point 10% beyond the worst.

    With ``draws`` (2 objectives only) a candidate's gain is its mean over ``candidate +
    draws`` (the expected gain); the front still grows by the candidate's own point."""
    points = np.vstack([measured, candidates])
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    span[span == 0] = 1.0
    reference = np.full(points.shape[1], 1.1)
    front = (measured - low) / span
    scaled = (candidates - low) / span
    front = front[pareto_mask(front)] if len(front) else front
    samples = None if draws is None else (candidates[:, None, :] + draws[None] - low) / span
    chosen: list[int] = []
    left = list(range(len(scaled)))
    while left and len(chosen) < wanted:
        if samples is None:
            base = hypervolume(front, reference) if len(front) else 0.0
            gains = (
                np.array([hypervolume(np.vstack([front, scaled[i]]), reference) for i in left])
                - base
            )
        else:
            gains = hypervolume_gains_2d(front, samples[left], reference).mean(axis=1)
        best = int(np.argmax(gains))
        if gains[best] <= 1e-12:
            break
        chosen.append(left.pop(best))
        front = np.vstack([front, scaled[chosen[-1]]])
        front = front[pareto_mask(front)]
    return chosen
