"""Search: Pareto ranking and hypervolume on hand-worked cases, budgets that are always met or
refused at once, reproducible strategies, and the final verification from a real supernet."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.predictors import SupernetAccuracy, make_predictor
from nas.search import (
    STRATEGY_NAMES,
    Constraint,
    GenomeOperators,
    InfeasibleBudgetError,
    LatencyObjective,
    MacsObjective,
    MeasuredObjective,
    ParamsObjective,
    PredictedObjective,
    SearchProblem,
    SpaceOperators,
    crowding_distance,
    hypervolume,
    hypervolume_gains_2d,
    make_strategy,
    non_dominated_sort,
    normalized_hypervolume,
    pareto_mask,
    verify_subnets,
)
from nas.training import TrainingConfig

SPACE = search_spaces.get("ofa_mbv3", preset="tiny")
SMALL_RUNS: dict[str, dict[str, Any]] = {
    "evolution": {"population_size": 20, "generations": 15, "max_evaluations": 150},
    "nsga2": {"population_size": 16, "generations": 30, "max_evaluations": 60},
    "optuna_nsga2": {"population_size": 12, "max_evaluations": 40},
    "linas": {
        "max_evaluations": 40,
        "initial_evaluations": 16,
        "evaluations_per_round": 8,
        "population_size": 16,
        "generations": 10,
    },
    "random": {"max_evaluations": 40},
}


pytestmark = pytest.mark.usefixtures("one_thread")


class SyntheticAccuracy:
    """A fixed, arch-dependent 'true accuracy': larger subnets are better with diminishing
    returns, plus per-choice effects and one interaction, so that fronts are not trivial."""

    def __init__(self, space: Any, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.weights = rng.normal(0.0, 0.4, space.encoding_dim)
        self.low = float(space.complexity_batch([space.sample(rng, "min")])[0][0])
        self.calls = 0

    def __call__(self, archs: Sequence[Any]) -> np.ndarray:
        self.calls += len(archs)
        x = self.space.encode_batch(archs)
        macs = self.space.complexity_batch(archs)[0]
        interaction = 0.8 * x[:, 0] * x[:, -1]
        return 70.0 + 6.0 * np.log(macs / self.low) + x @ self.weights + interaction


class MacsAsLatency:
    """A latency estimator in the shape of ``nas.hardware.LatencyPredictor``: ms from MACs at
    a fixed throughput (1 GMAC/s), which is what a roofline-bound device does."""

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        return SPACE.complexity_batch(archs)[0] / 1e6


def measured_problem(budget: float = 2.0e6) -> tuple[SearchProblem, SyntheticAccuracy]:
    truth = SyntheticAccuracy(SPACE)
    macs = MacsObjective(SPACE)
    problem = SearchProblem(SPACE, [MeasuredObjective(truth), macs], [Constraint(macs, budget)])
    return problem, truth


def predicted_problem(budget_ms: float = 1.5) -> SearchProblem:
    truth = SyntheticAccuracy(SPACE)
    rng = np.random.default_rng(0)
    archs = [SPACE.sample(rng) for _ in range(200)]
    predictor = make_predictor("ridge").fit(SPACE.encode_batch(archs), truth(archs))
    latency = LatencyObjective(MacsAsLatency(), device="host")
    return SearchProblem(
        SPACE,
        [PredictedObjective(predictor), latency, ParamsObjective(SPACE)],
        [Constraint(latency, budget_ms)],
    )


# --- Pareto ranking ----------------------------------------------------------------------------
def test_non_dominated_sort_hand_worked() -> None:
    # minimise both: A, B, D, G are mutually non-dominated; C is dominated by B; E by C.
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [5, 5], [3, 2]], dtype=float)
    assert non_dominated_sort(points).tolist() == [0, 0, 1, 0, 2, 0]
    assert pareto_mask(points).tolist() == [True, True, False, True, False, True]


def test_constrained_domination_puts_infeasible_last_by_violation() -> None:
    points = np.array([[1, 1], [5, 5], [0, 0], [0, 0]], dtype=float)
    violation = np.array([0.0, 0.0, 0.5, 0.1])
    # the two infeasible points dominate everything but come last, least violation first
    assert non_dominated_sort(points, violation).tolist() == [0, 1, 3, 2]
    assert pareto_mask(points, violation).tolist() == [True, False, False, False]


def test_crowding_distance_hand_worked() -> None:
    points = np.array([[1, 5], [2, 3], [3, 2], [4, 1]], dtype=float)
    ranks = np.zeros(4, dtype=np.int64)
    distance = crowding_distance(points, ranks)
    # interior: (3-1)/3 + (5-2)/4 and (4-2)/3 + (3-1)/4; ends infinite
    assert np.isinf(distance[[0, 3]]).all()
    assert distance[1] == pytest.approx(2 / 3 + 3 / 4)
    assert distance[2] == pytest.approx(2 / 3 + 2 / 4)


# --- hypervolume -------------------------------------------------------------------------------
def test_hypervolume_2d_hand_worked() -> None:
    points = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(points, [4, 4]) == pytest.approx(6.0)
    # a dominated point and a point beyond the reference add nothing
    more = np.vstack([points, [[3, 3], [5, 0]]])
    assert hypervolume(more, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0


def test_hypervolume_3d_hand_worked() -> None:
    assert hypervolume(np.array([[1.0, 1.0, 1.0]]), [2, 2, 2]) == pytest.approx(1.0)
    # boxes 2x2x1 and 1x1x2 overlapping in a unit cube: 4 + 2 - 1
    points = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert hypervolume(points, [2, 2, 2]) == pytest.approx(5.0)


def _grid_volume(points: np.ndarray, reference: Sequence[int]) -> int:
    """Unit cells of the integer grid dominated by some point: exact for integer points."""
    cells = np.array(list(itertools.product(*(range(r) for r in reference))))
    dominated = (points[None, :, :] <= cells[:, None, :]).all(axis=2).any(axis=1)
    return int(dominated.sum())


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_grid_count(dims: int) -> None:
    rng = np.random.default_rng(dims)
    reference = [6] * dims
    for _ in range(5):
        points = rng.integers(0, 6, size=(12, dims)).astype(float)
        assert hypervolume(points, reference) == pytest.approx(_grid_volume(points, reference))


def test_normalized_hypervolume_reference_and_bounds() -> None:
    directions = ["maximize", "minimize"]
    lower, upper = [90.0, 1.0], [100.0, 5.0]
    # the ideal corner dominates the whole unit box; the midpoint a quarter of it
    assert normalized_hypervolume(np.array([[100.0, 1.0]]), directions, lower, upper) == 1.0
    assert normalized_hypervolume(
        np.array([[95.0, 3.0]]), directions, lower, upper
    ) == pytest.approx(0.25)
    # a point at or beyond the worse bound adds nothing
    assert normalized_hypervolume(np.array([[80.0, 2.0]]), directions, lower, upper) == 0.0
    with pytest.raises(ValueError, match="upper"):
        normalized_hypervolume(np.array([[95.0, 3.0]]), directions, [90, 5], [100, 5])


# --- operators -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", search_spaces.names())
def test_vectorised_operators_build_valid_archs_of_every_space(name: str) -> None:
    space = search_spaces.get(name, preset="tiny")
    operators = GenomeOperators(space)
    rng = np.random.default_rng(0)
    archs, genes = operators.sample(40, rng)
    assert genes is not None
    for arch in archs:  # identical to the validated arch, hash and id included
        validated = space.arch_from_dict(arch.to_dict())
        assert arch == validated and hash(arch) == hash(validated) and arch.id == validated.id
    np.testing.assert_array_equal(operators.genes_of(archs), genes)
    first, second = np.arange(40), np.arange(40)[::-1].copy()
    copies, same = operators.offspring(archs, genes, first, second, np.zeros(40, bool), 0.0, rng)
    assert copies == archs and same is not None and np.array_equal(same, genes)
    children, child_genes = operators.offspring(
        archs, genes, first, second, np.ones(40, bool), 0.0, rng
    )
    assert child_genes is not None  # every choice comes from one of the two parents
    assert np.all((child_genes == genes) | (child_genes == genes[second]))
    assert all(space.arch_from_dict(c.to_dict()) == c for c in children)
    mutants, mutant_genes = operators.offspring(
        archs, genes, first, first, np.zeros(40, bool), 0.3, rng
    )
    assert mutant_genes is not None
    changed = (mutant_genes != genes).mean()
    expected = 0.3 * np.mean(1 - 1 / operators.num_choices)
    assert abs(changed - expected) < 0.05
    for arch in mutants:
        space.arch_from_dict(arch.to_dict())


# --- problems and budgets ----------------------------------------------------------------------
def test_infeasible_budget_is_refused_at_once_with_the_minimum() -> None:
    macs = MacsObjective(SPACE)
    smallest = int(SPACE.complexity_batch([SPACE.sample(np.random.default_rng(0), "min")])[0][0])
    started = time.process_time()
    with pytest.raises(InfeasibleBudgetError) as caught:
        SearchProblem(SPACE, [MacsObjective(SPACE, name="cost")], [Constraint(macs, smallest - 1)])
    assert time.process_time() - started < 1.0
    message = str(caught.value)
    assert "macs" in message and f"{smallest:.6g}" in message and "allowed values: >=" in message
    assert caught.value.minimum == smallest
    latency = LatencyObjective(MacsAsLatency(), device="host")
    with pytest.raises(InfeasibleBudgetError, match=r"latency:host: budget 0\.1 ms"):
        SearchProblem(SPACE, [latency], [Constraint(latency, 0.1)])
    # exactly the minimum is feasible, and searches then return the min subnet's network
    problem = SearchProblem(
        SPACE, [MacsObjective(SPACE, name="cost")], [Constraint(macs, smallest)]
    )
    result = make_strategy("random", max_evaluations=3).run(problem, seed=0)
    assert all(s.limits["macs"] <= smallest for s in result.subnets)


class NoisyMinLatency(MacsAsLatency):
    """A measured table's noise: the min subnet times 20% slower than its MACs say."""

    def __init__(self) -> None:
        self.min_key = SPACE.encode(SPACE.sample(np.random.default_rng(0), "min")).tobytes()

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        ms = super().predict(archs)
        slow = [SPACE.encode(a).tobytes() == self.min_key for a in archs]
        return np.where(slow, ms * 1.2, ms)


def test_a_budget_the_min_subnet_misses_but_a_neighbour_meets_is_searched() -> None:
    latency = LatencyObjective(NoisyMinLatency(), device="board")
    floor = float(MacsAsLatency().predict([SPACE.sample(np.random.default_rng(0), "min")])[0])
    budget = floor * 1.1  # below the min subnet's noisy 1.2x, above a near neighbour's MACs
    problem = SearchProblem(
        SPACE, [MacsObjective(SPACE, name="cost"), latency], [Constraint(latency, budget)]
    )
    assert latency.evaluate([problem.min_arch], SPACE.encode_batch([problem.min_arch]))[0] <= budget
    result = make_strategy("random", max_evaluations=20).run(problem, seed=0)
    assert result.front() and all(s.limits[latency.name] <= budget for s in result.front())
    # below everything the probe finds, the refusal names the smallest value found
    with pytest.raises(InfeasibleBudgetError, match="allowed values: >=") as caught:
        SearchProblem(SPACE, [latency], [Constraint(latency, floor * 0.5)])
    assert floor * 0.5 < caught.value.minimum <= floor * 1.2


def test_budgets_each_reachable_but_not_together_are_refused_as_such() -> None:
    macs = MacsObjective(SPACE)
    smallest = SPACE.sample(np.random.default_rng(0), "min")
    min_macs = float(SPACE.complexity_batch([smallest])[0][0])
    latency = LatencyObjective(NoisyMinLatency(), device="board")
    # only the min subnet has the fewest MACs, and it is the one subnet too slow for the budget
    budgets = [Constraint(macs, min_macs), Constraint(latency, min_macs / 1e6 * 1.1)]
    with pytest.raises(InfeasibleBudgetError, match="together with the other budgets"):
        SearchProblem(SPACE, [macs], budgets)
    for alone in budgets:
        SearchProblem(SPACE, [macs], [alone])


def test_bad_constraints_and_options_name_the_field() -> None:
    accuracy = PredictedObjective(make_predictor("ridge"))
    with pytest.raises(ValueError, match="objective: 'accuracy' is maximised"):
        Constraint(accuracy, 1.0)
    with pytest.raises(ValueError, match="max_value"):
        Constraint(MacsObjective(SPACE), -1.0)
    with pytest.raises(ValueError, match="allowed values"):
        make_strategy("annealing")
    with pytest.raises(ValidationError, match="population_size"):
        make_strategy("nsga2", population_size=1)
    with pytest.raises(ValidationError, match="mutation_prob"):
        make_strategy("evolution", mutation_prob=1.5)
    problem, _ = measured_problem()
    with pytest.raises(ValueError, match="max_evaluations: required"):
        make_strategy("nsga2").run(problem)
    with pytest.raises(ValueError, match="objective: 'latency' is not an objective"):
        make_strategy("evolution", objective="latency", max_evaluations=5).run(problem)


# --- strategies --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", STRATEGY_NAMES)
def test_every_returned_subnet_meets_the_budget_and_seeds_reproduce(kind: str) -> None:
    problem, truth = measured_problem(budget=1.6e6)
    strategy = make_strategy(kind, **SMALL_RUNS[kind])
    first = strategy.run(problem, seed=3)
    again = strategy.run(problem, seed=3)
    other = strategy.run(problem, seed=4)
    assert first.subnets and first.pareto and first.best is not None
    for subnet in first.subnets:
        assert subnet.feasible and subnet.limits["macs"] <= 1.6e6
        assert SPACE.complexity(SPACE.arch_from_dict(subnet.arch)).macs == subnet.limits["macs"]
    assert len({s.id for s in first.subnets}) == len(first.subnets)
    # every strategy starts from the min subnet (the max one is over this budget)
    assert SPACE.reference_archs()["min"].id in {s.id for s in first.subnets}
    budget = SMALL_RUNS[kind]["max_evaluations"]
    assert first.num_evaluations <= budget and truth.calls <= 3 * budget
    strip = {"seconds"}
    assert first.model_dump(exclude=strip) == again.model_dump(exclude=strip)
    assert [s.id for s in first.subnets] != [s.id for s in other.subnets]


def test_the_space_operators_drive_the_same_strategies() -> None:
    """Any object following the space contract works, through its own per-arch operators."""
    truth = SyntheticAccuracy(SPACE)
    macs = MacsObjective(SPACE)
    problem = SearchProblem(
        SPACE,
        [MeasuredObjective(truth), macs],
        [Constraint(macs, 1.6e6)],
        operators=SpaceOperators(SPACE),
    )
    for kind in ("evolution", "nsga2", "linas"):
        result = make_strategy(kind, **SMALL_RUNS[kind]).run(problem, seed=0)
        assert result.pareto and all(s.limits["macs"] <= 1.6e6 for s in result.subnets)
        assert make_strategy(kind, **SMALL_RUNS[kind]).run(problem, seed=0).model_dump(
            exclude={"seconds"}
        ) == result.model_dump(exclude={"seconds"})


def test_pareto_set_is_the_non_dominated_feasible_subnets() -> None:
    problem, _ = measured_problem()
    result = make_strategy("random", max_evaluations=60).run(problem, seed=0)
    values = result.matrix()
    front = result.front()
    for s in front:
        a, m = s.values["accuracy"], s.values["macs"]
        assert not np.any(
            (values[:, 0] >= a) & (values[:, 1] <= m) & ((values[:, 0] > a) | (values[:, 1] < m))
        )
    assert len(front) == int(pareto_mask(values * [-1, 1]).sum())


def test_constrained_evolution_beats_random_under_a_latency_budget() -> None:
    problem = predicted_problem(budget_ms=1.2)
    evolution = make_strategy("evolution", population_size=40, generations=40).run(problem, seed=0)
    best = evolution.best_subnet()
    assert best is not None and best.values["latency:host"] <= 1.2
    # the same number of random feasible subnets scored by the same predictor
    sampled = make_strategy("random", max_evaluations=evolution.num_candidates).run(problem, seed=0)
    assert best.values["accuracy"] >= max(s.values["accuracy"] for s in sampled.subnets)
    assert evolution.num_candidates >= 40 * 40 * 0.7


def test_nsga2_on_cheap_objectives_returns_a_three_objective_front() -> None:
    problem = predicted_problem(budget_ms=2.0)
    result = make_strategy("nsga2", population_size=24, generations=20).run(problem, seed=1)
    assert result.num_evaluations == 0 and result.num_candidates > 24
    assert all(s.values["latency:host"] <= 2.0 for s in result.subnets)
    scores = result.matrix() * [-1, 1, 1]
    assert len(result.pareto) == int(pareto_mask(scores).sum()) >= 2


@pytest.mark.parametrize("selection", ["front", "hypervolume", "expected_hypervolume"])
def test_linas_spends_its_budget_better_than_random(selection: str) -> None:
    problem, _ = measured_problem(budget=2.5e6)
    bounds = ([60.0, 5.0e5], [90.0, 2.5e6])
    volumes: dict[str, list[float]] = {"linas": [], "random": []}
    for seed in range(2):
        for kind in volumes:
            options = {**SMALL_RUNS[kind], "max_evaluations": 60}
            if kind == "linas":
                options["selection"] = selection
            result = make_strategy(kind, **options).run(problem, seed=seed)
            volumes[kind].append(
                normalized_hypervolume(result.matrix(), problem.directions, *bounds)
            )
    assert np.mean(volumes["linas"]) > np.mean(volumes["random"])


def test_hypervolume_gains_2d_equal_the_exact_difference() -> None:
    """The vectorised gains that expected-hypervolume selection averages equal
    hypervolume(front + point) - hypervolume(front), points beyond the reference included."""
    rng = np.random.default_rng(0)
    reference = np.array([1.1, 1.1])
    for size in (0, 1, 3, 8):
        front = rng.random((size, 2))
        front = front[pareto_mask(front)] if size else front
        points = rng.random((6, 2)) * 1.3
        base = hypervolume(front, reference) if size else 0.0
        exact = [hypervolume(np.vstack([front, p]), reference) - base for p in points]
        assert np.allclose(hypervolume_gains_2d(front, points, reference), exact)
    # the hand-worked case: front (0.2, 0.6), (0.6, 0.2); a point at (0.4, 0.4) adds 0.2 x 0.2
    front = np.array([[0.2, 0.6], [0.6, 0.2]])
    assert hypervolume_gains_2d(front, np.array([[0.4, 0.4]]), np.ones(2))[0] == pytest.approx(0.04)


def test_linas_expected_hypervolume_with_three_objectives_is_fast_and_feasible() -> None:
    """Beyond two objectives the expectation gives way to one optimistic point per shortlisted
    candidate (exact hypervolume in 3-D is ~1 ms a call): still feasible, deterministic, quick."""
    macs = MacsObjective(SPACE)
    problem = SearchProblem(
        SPACE,
        [MeasuredObjective(SyntheticAccuracy(SPACE)), macs, ParamsObjective(SPACE)],
        [Constraint(macs, 2.5e6)],
    )
    options = {"max_evaluations": 40, "initial_evaluations": 10, "pool_samples": 300}
    started = time.process_time()
    result = make_strategy("linas", **options).run(problem, seed=3)
    assert time.process_time() - started < 20
    assert len(result.subnets) == 40 and all(s.limits["macs"] <= 2.5e6 for s in result.subnets)
    again = make_strategy("linas", **options).run(problem, seed=3)
    assert [s.id for s in again.subnets] == [s.id for s in result.subnets]


def test_tight_budgets_never_hang() -> None:
    """Just above the min subnet almost nothing is feasible: bounded sampling still finishes."""
    macs = MacsObjective(SPACE)
    smallest = SPACE.complexity_batch([SPACE.sample(np.random.default_rng(0), "min")])[0][0]
    problem = SearchProblem(
        SPACE,
        [MeasuredObjective(SyntheticAccuracy(SPACE)), macs],
        [Constraint(macs, smallest * 1.02)],
    )
    started = time.process_time()
    for kind in ("evolution", "nsga2", "linas", "random"):
        result = make_strategy(kind, **SMALL_RUNS[kind]).run(problem, seed=0)
        assert result.subnets and all(s.limits["macs"] <= smallest * 1.02 for s in result.subnets)
    assert time.process_time() - started < 20


# --- final verification ------------------------------------------------------------------------
def test_verification_measures_chosen_subnets_from_the_supernet() -> None:
    data = load_dataset(DatasetSpec(kind="synthetic", num_samples=120, resolution=24))
    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=data.num_classes)
    torch.manual_seed(0)
    supernet = space.build_supernet()
    state = {
        "model": supernet.state_dict(),
        "config": TrainingConfig(batch_size=16, bn_recalibration_batches=2).model_dump(mode="json"),
    }
    measure = SupernetAccuracy.from_checkpoint(space, data, state, split="val")
    problem, _ = measured_problem()
    result = make_strategy("random", max_evaluations=4).run(problem, seed=0)
    verified = verify_subnets(space, result.front(), measure)
    assert [v.id for v in verified] == [s.id for s in result.front()]
    archs = [space.arch_from_dict(s.arch) for s in result.front()]
    again = measure(archs)
    for v, subnet, acc in zip(verified, result.front(), again, strict=True):
        assert 0.0 <= v.measured_accuracy <= 100.0 and v.measured_accuracy == acc
        assert v.accuracy_gap == pytest.approx(v.measured_accuracy - subnet.values["accuracy"])
    with pytest.raises(ValueError, match="latency"):
        verify_subnets(space, result.front(), measure, measure_latency=MacsAsLatency().predict)
