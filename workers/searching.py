"""The searching stage: one Pareto front per device of the job, made of measurements, as
``results.json``.

Every device gets the same search problem: maximise accuracy, minimise latency on that device
(its table's predictor) and MACs, under the device's budget (``search.budgets``: latency or
MACs) if it has one. Budgets are checked against every device's table before anything is
measured. Strategies that spend true evaluations (``linas``, ``random``, ``optuna_nsga2``)
measure on the holdout split with the Ray actor pool, ``search.evaluations`` per device,
starting from what the building_predictor stage measured (free to look up again); the
others (``evolution``, ``nsga2``) search the fitted predictor.

Search-time values are predictions (or holdout scores), so they only propose: up to
``search.measure`` candidates per device (its front and its most accurate subnets within the
budget), plus the min and max subnets, are measured on val from the supernet (BN
recalibrated) and timed whole on this host for host devices. Each device's front, its best
subnet and its hypervolume are then recomputed from those measurements
(``workers.results.measured_front``), so what a user is shown and handed is what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.search import EvaluatedSubnet, SearchResult, StrategySpec
from workers.results import (
    RESULTS_NAME,
    FrontResult,
    JobResults,
    LatencyResult,
    SubnetResult,
    front_objectives,
    measured_front,
    shown_latency_ms,
    write_results,
)
from workers.spec import SearchSettings

if TYPE_CHECKING:
    from workers.jobs import StageContext
    from workers.trained import TrainedJob

#: Strategies whose accuracy is measured from the supernet (the rest search the predictor).
MEASURED_STRATEGIES = frozenset({"linas", "random", "optuna_nsga2"})
#: Seconds of timed runs per subnet when a host device's latency is measured whole.
VERIFY_TIMING_S = 0.25


@dataclass(frozen=True)
class Target:
    """One device of the job: its table's latency objective and its budget."""

    device: str
    table: Any
    latency: Any
    budget: dict[str, float | int] | None
    constraints: list[Any]


def strategy_for(settings: SearchSettings) -> StrategySpec:
    """The job's strategy configured from its search settings.

    For LINAS, ``population`` is the inner NSGA-II's and ``generations`` the total over its
    rounds (LINAS runs a short NSGA-II per round); a quarter of ``evaluations`` (2 to 20) are
    random subnets measured before round 1.
    """
    e, population, generations = settings.evaluations, settings.population, settings.generations
    options: dict[str, Any]
    if settings.strategy == "linas":
        initial = min(max(2, e // 4), 20)
        per_round = 5
        rounds = max(1, math.ceil((e - initial) / per_round))
        options = {
            "max_evaluations": e,
            "initial_evaluations": initial,
            "evaluations_per_round": per_round,
            "population_size": population,
            "generations": max(1, math.ceil(generations / rounds)),
        }
    elif settings.strategy in ("evolution", "nsga2"):
        options = {"population_size": population, "generations": generations}
    elif settings.strategy == "optuna_nsga2":
        options = {"population_size": population, "max_evaluations": e}
    else:
        options = {"max_evaluations": e}
    return StrategySpec(kind=settings.strategy, options=options)


def _targets(ctx: StageContext, space: Any) -> list[Target]:
    """Every device's table and budget; an infeasible budget fails here, before measuring."""
    from nas.search import Constraint, InfeasibleBudgetError, MacsObjective, SearchProblem
    from workers.search import latency_objective
    from workers.tables import job_table

    request = ctx.request
    macs = MacsObjective(space)
    targets = []
    for device in request.devices:
        ctx.log(f"latency table of {device}")
        table = job_table(
            ctx.job_dir,
            request.artifact_dir,
            device,
            request.space,
            request.preset,
            num_classes=space.num_classes,
            in_channels=space.in_channels,
        )
        if table.anchor is not None:
            ctx.log(f"{device}: latency table anchored {table.anchor.describe()}")
        latency = latency_objective(space, table)
        budget = request.search.budgets.get(device)
        constraints = []
        if budget is not None and budget.latency_ms is not None:
            constraints = [Constraint(latency, budget.latency_ms)]
        elif budget is not None and budget.macs is not None:
            constraints = [Constraint(macs, float(budget.macs))]
        try:
            SearchProblem(space, [latency, macs], constraints)
        except InfeasibleBudgetError as exc:
            raise ValueError(f"search.budgets.{device}: {exc}") from exc
        shown = None if budget is None else budget.model_dump(exclude_none=True)
        targets.append(Target(device, table, latency, shown, constraints))
    return targets


def _front_members(result: SearchResult, latency: str) -> list[EvaluatedSubnet]:
    """The feasible Pareto set, most accurate first (ties: faster, then smaller)."""
    return sorted(
        result.front(),
        key=lambda s: (-s.values["accuracy"], s.values[latency], s.values["macs"]),
    )


def _hypervolume(space: Any, target: Target, values: np.ndarray) -> float | None:
    """Share of the box [0, 100]% x [min, max subnet cost] that the points ``values`` ([N, 2]:
    accuracy and the front's cost, ``front_objectives``) dominate; fixed bounds from the
    table and the space's MACs, so fronts of one space compare across jobs."""
    from nas.search import normalized_hypervolume

    if len(values) == 0:
        return None
    extremes = [space.sample(np.random.default_rng(0), m) for m in ("min", "max")]
    if front_objectives(target.device, target.budget)[1] == "macs":
        low, high = space.complexity_batch(extremes)[0].astype(float)
    else:
        low, high = target.latency.estimator.predict(extremes)
    lower, upper = [0.0, float(low)], [100.0, max(float(high), float(low) * (1 + 1e-9) + 1e-9)]
    return normalized_hypervolume(values, ["maximize", "minimize"], lower, upper)


def _search_values(target: Target, subnets: list[EvaluatedSubnet]) -> np.ndarray:
    """[N, 2] search-time values (accuracy: predicted or holdout; the front's cost)."""
    cost = front_objectives(target.device, target.budget)[1]  # a name of the search's values
    return np.array([[s.values["accuracy"], s.values[cost]] for s in subnets]).reshape(-1, 2)


def _shown_values(target: Target, subnets: list[SubnetResult]) -> np.ndarray:
    """[N, 2] shown values of front members: val accuracy, and ``shown_latency_ms`` or MACs."""
    by_macs = front_objectives(target.device, target.budget)[1] == "macs"
    rows = [
        [s.measured_accuracy, float(s.macs) if by_macs else shown_latency_ms(s, target.device)]
        for s in subnets
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _hypervolume_trace(
    space: Any, target: Target, result: SearchResult, points: int = 20
) -> list[tuple[int, float]]:
    """(measured subnets so far, hypervolume of the feasible ones) at up to ``points`` steps of
    a strategy that measures, on its search-time (holdout) values; empty for those that
    search the predictor (no order to replay)."""
    measured = sorted(
        (s for s in result.subnets if s.evaluation is not None and s.feasible),
        key=lambda s: s.evaluation or 0,
    )
    if not measured:
        return []
    total = len(measured)
    steps = sorted({max(1, round(total * (k + 1) / points)) for k in range(points)})
    trace = []
    for count in steps:
        hv = _hypervolume(space, target, _search_values(target, measured[:count]))
        if hv is not None:
            trace.append(((measured[count - 1].evaluation or 0) + 1, hv))
    return trace


def _search(ctx: StageContext, trained: TrainedJob, targets: list[Target]) -> list[SearchResult]:
    """Run the strategy once per device (accuracy from the predictor, or measured on the
    holdout split by the strategies that measure)."""
    from nas.predictors import AccuracyDataset
    from nas.search import MacsObjective, MeasuredObjective, PredictedObjective, SearchProblem
    from workers.accuracy import SubnetEvaluatorPool
    from workers.search import remembered
    from workers.stages import accuracy_job
    from workers.trained import dataset_path

    settings = ctx.request.search
    spec = strategy_for(settings)
    strategy = spec.build()
    space = trained.space
    macs = MacsObjective(space)
    pool = None
    results = []
    try:
        if spec.kind in MEASURED_STRATEGIES:
            stored = dataset_path(ctx.job_dir)
            known = {}
            if stored.exists():
                dataset = AccuracyDataset.model_validate_json(stored.read_bytes())
                known = {r.id: r.accuracy for r in dataset.records}
            pool = SubnetEvaluatorPool(
                accuracy_job(ctx, settings.evaluations), data_root=ctx.request.data_root
            )
            accuracy: Any = MeasuredObjective(remembered(pool.accuracies, known))
        else:
            accuracy = PredictedObjective(trained.predictor)
        for k, target in enumerate(targets):
            problem = SearchProblem(space, [accuracy, target.latency, macs], target.constraints)

            def progress(done: int, total: int, k: int = k) -> None:
                ctx.progress(0.1 + 0.6 * (k + done / max(total, 1)) / len(targets))

            result = strategy.run(problem, seed=settings.seed, progress=progress)
            results.append(result)
            ctx.log(
                f"{target.device}: {spec.kind} scored {result.num_candidates} candidates "
                f"({result.num_evaluations} measured on holdout), {len(result.pareto)} on "
                "its search-time front"
            )
    finally:
        if pool is not None:
            pool.close()
    return results


def _candidates(result: SearchResult, target: Target, measure: int) -> list[EvaluatedSubnet]:
    """What the search proposes for the shown front, at most ``measure`` subnets: the
    feasible subnets no other beats on search-time accuracy and the front's cost (evenly
    thinned along accuracy when more than half of ``measure``), then the most accurate
    feasible ones by search-time value, since any of them may turn out best once measured."""
    from nas.search import pareto_mask

    feasible = sorted(
        (s for s in result.subnets if s.feasible),
        key=lambda s: (-s.values["accuracy"], s.values[target.latency.name], s.values["macs"]),
    )
    if not feasible:
        return []
    values = _search_values(target, feasible) * np.array([-1.0, 1.0])
    front = [s for s, keep in zip(feasible, pareto_mask(values), strict=True) if keep]
    keep = max(1, measure // 2)
    if len(front) > keep:
        front = [
            front[i] for i in np.unique(np.linspace(0, len(front) - 1, keep).round().astype(int))
        ]
    chosen: dict[str, EvaluatedSubnet] = {}
    for subnet in [*front, *feasible]:
        if len(chosen) >= measure:
            break
        chosen.setdefault(subnet.id, subnet)
    return list(chosen.values())


def _measure(
    ctx: StageContext, trained: TrainedJob, targets: list[Target], archs: list[Any]
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Val accuracy of every candidate (arch_id -> %, BN recalibrated), and its latency timed
    whole on this host for each host device ((device, arch_id) -> ms)."""
    from workers.search import host_latency

    ctx.log(f"measuring {len(archs)} candidate subnets on val")
    with trained.lock:
        found = trained.measure_val(archs)
        accuracy = {a.id: float(v) for a, v in zip(archs, found, strict=True)}
        ctx.progress(0.85)
        timed: dict[tuple[str, str], float] = {}
        for k, target in enumerate(targets):
            timer = host_latency(
                trained.space, trained.val.supernet, target.table, budget_s=VERIFY_TIMING_S
            )
            if timer is not None:
                ctx.log(f"{target.device}: timing {len(archs)} candidate subnets whole")
                for arch, ms in zip(archs, timer(archs), strict=True):
                    timed[(target.device, arch.id)] = float(ms)
            ctx.progress(0.85 + 0.15 * (k + 1) / len(targets))
    return accuracy, timed


def _results(
    trained: TrainedJob,
    targets: list[Target],
    candidates: dict[str, tuple[Any, float | None]],
    accuracy: dict[str, float],
    timed: dict[tuple[str, str], float],
) -> JobResults:
    """Every measured candidate as a subnet; each device's front and best recomputed from
    the measured values (``workers.results.measured_front``)."""
    space = trained.space
    archs = [arch for arch, _ in candidates.values()]
    macs, params = space.complexity_batch(archs)
    predicted = {t.device: t.latency.estimator.predict(archs) for t in targets}
    subnets = [
        SubnetResult(
            arch_id=arch.id,
            arch=arch.to_dict(),
            resolution=int(arch.resolution),
            macs=int(macs[i]),
            params=int(params[i]),
            predicted_accuracy=None if searched is None else min(max(searched, 0.0), 100.0),
            measured_accuracy=accuracy[arch.id],
            latencies={
                t.device: LatencyResult(
                    predicted_ms=max(float(predicted[t.device][i]), 0.0),
                    measured_ms=timed.get((t.device, arch.id)),
                )
                for t in targets
            },
        )
        for i, (arch, searched) in enumerate(candidates.values())
    ]
    fronts = []
    for target in targets:
        members = measured_front(subnets, target.device, target.budget)
        fronts.append(
            FrontResult(
                device=target.device,
                objectives=front_objectives(target.device, target.budget),
                hypervolume=_hypervolume(space, target, _shown_values(target, members)),
                budget=target.budget,
                members=[s.arch_id for s in members],
                best=members[0].arch_id if members else None,
            )
        )
    return JobResults(subnets=subnets, fronts=fronts)


def search_fronts(ctx: StageContext) -> Path:
    """Search, measure the candidates, recompute each front on measured values and write
    ``job_dir/results.json``; returns its path."""
    from workers.trained import load_request

    request = ctx.request
    trained = load_request(request)
    space = trained.space
    targets = _targets(ctx, space)
    ctx.progress(0.1)
    searched = _search(ctx, trained, targets)
    # arch_id -> (arch, search-time accuracy); the min and max subnets anchor every front
    candidates: dict[str, tuple[Any, float | None]] = {}
    for target, result in zip(targets, searched, strict=True):
        for subnet in _candidates(result, target, request.search.measure):
            known = candidates.get(subnet.id)
            if known is None or known[1] is None:
                candidates[subnet.id] = (
                    space.arch_from_dict(subnet.arch),
                    subnet.values["accuracy"],
                )
    for arch in space.reference_archs().values():
        candidates.setdefault(arch.id, (arch, None))
    archs = [arch for arch, _ in candidates.values()]
    accuracy, timed = _measure(ctx, trained, targets, archs)
    results = _results(trained, targets, candidates, accuracy, timed)
    for target, result, front in zip(targets, searched, results.fronts, strict=True):
        best = None if front.best is None else results.subnet(front.best)
        if best is None:
            summary = "; no measured subnet meets the budget"
        else:
            summary = f"; best {best.arch_id}: {best.measured_accuracy:.2f}% measured on val"
        search_front = _front_members(result, target.latency.name)
        ctx.metrics(
            key=f"searching/{front.device}"[:64],
            message=f"{front.device}: {len(front.members)} measured subnets on the front{summary}",
            data={
                "device": front.device,
                "front_size": len(front.members),
                "hypervolume": front.hypervolume,
                "search_hypervolume": _hypervolume(
                    space, target, _search_values(target, search_front)
                ),
                "hypervolume_trace": [
                    list(point) for point in _hypervolume_trace(space, target, result)
                ],
                "measured": len(archs),
                "budget": front.budget,
                "best": None if best is None else best.model_dump(mode="json"),
            },
        )
        if best is None:
            ctx.log(
                f"{front.device}: none of the {len(archs)} measured subnets meets the budget "
                f"{front.budget} as measured; the table predicted some would (see "
                "docs/hardware.md on re-profiling the device), so nothing is picked",
                level="warning",
            )
    path = ctx.job_dir / RESULTS_NAME
    write_results(results, path)
    return path
