"""The searching stage: one Pareto front per device of the job, verified, as ``results.json``.

Every device gets the same problem shape: maximise accuracy, minimise latency on that device
(its table's predictor) and MACs, under the device's budget (``search.budgets``: latency or
MACs) if it has one. Budgets are checked against every device's table before anything is
measured. Strategies that spend true evaluations (``linas``, ``random``, ``optuna_nsga2``)
measure on the holdout split with the Ray actor pool, ``search.evaluations`` per device,
starting from what the building_predictor stage measured (free to look up again); the
others (``evolution``, ``nsga2``) search the fitted predictor. The most accurate members of
every front are then measured on val from the supernet (BN recalibrated), and timed whole on
this host where the device is a host device.
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
    write_results,
)
from workers.spec import SearchSettings

if TYPE_CHECKING:
    from workers.jobs import StageContext
    from workers.trained import TrainedJob

#: Strategies whose accuracy is measured from the supernet (the rest search the predictor).
MEASURED_STRATEGIES = frozenset({"linas", "random", "optuna_nsga2"})
#: Members of each front re-measured on val, most accurate first.
VERIFY = 5
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


def _hypervolume(space: Any, target: Target, members: list[EvaluatedSubnet]) -> float | None:
    """Share of the box [0, 100]% x [min, max subnet latency] x [min, max subnet MACs] that
    the front dominates: fixed bounds, so fronts of one space compare across jobs."""
    from nas.search import normalized_hypervolume

    if not members:
        return None
    extremes = [space.sample(np.random.default_rng(0), m) for m in ("min", "max")]
    low_lat, high_lat = target.latency.estimator.predict(extremes)
    low_macs, high_macs = space.complexity_batch(extremes)[0].astype(float)
    names = ["accuracy", target.latency.name, "macs"]
    values = np.array([[s.values[n] for n in names] for s in members])
    lower = [0.0, float(low_lat), float(low_macs)]
    upper = [100.0, max(float(high_lat), lower[1] + 1e-9), max(float(high_macs), lower[2] + 1)]
    return normalized_hypervolume(values, ["maximize", "minimize", "minimize"], lower, upper)


def _hypervolume_trace(
    space: Any, target: Target, result: SearchResult, points: int = 20
) -> list[tuple[int, float]]:
    """(measured subnets so far, hypervolume of the feasible ones) at up to ``points`` steps of
    a strategy that measures; empty for those that search the predictor (no order to replay)."""
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
        hv = _hypervolume(space, target, measured[:count])
        if hv is not None:
            trace.append(((measured[count - 1].evaluation or 0) + 1, hv))
    return trace


def _search(
    ctx: StageContext, trained: TrainedJob, targets: list[Target]
) -> tuple[list[list[EvaluatedSubnet]], list[list[tuple[int, float]]]]:
    """Run the strategy once per device; the front members of each, and the hypervolume
    over the search (``_hypervolume_trace``)."""
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
    fronts = []
    traces = []
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
                ctx.progress(0.1 + 0.7 * (k + done / max(total, 1)) / len(targets))

            result = strategy.run(problem, seed=settings.seed, progress=progress)
            members = _front_members(result, target.latency.name)
            fronts.append(members)
            traces.append(_hypervolume_trace(space, target, result))
            best = members[0] if members else None
            shown = "" if best is None else f"; most accurate {best.values['accuracy']:.2f}%"
            ctx.log(
                f"{target.device}: {spec.kind} scored {result.num_candidates} candidates "
                f"({result.num_evaluations} measured), {len(members)} on the front{shown}"
            )
    finally:
        if pool is not None:
            pool.close()
    return fronts, traces


def _verify(
    ctx: StageContext, trained: TrainedJob, targets: list[Target], fronts: list[list[Any]]
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Val accuracy of each front's most accurate members (arch_id -> %), and their latency
    timed whole on this host for host devices ((device, arch_id) -> ms)."""
    from nas.search import verify_subnets
    from workers.search import host_latency, remembered

    accuracy: dict[str, float] = {}
    timed: dict[tuple[str, str], float] = {}
    measure = remembered(trained.measure_val)
    with trained.lock:
        for k, (target, members) in enumerate(zip(targets, fronts, strict=True)):
            timer = host_latency(
                trained.space, trained.val.supernet, target.table, budget_s=VERIFY_TIMING_S
            )
            verified = verify_subnets(
                trained.space,
                members[:VERIFY],
                measure,
                measure_latency=timer,
                latency=target.latency.name if timer is not None else None,
            )
            for v in verified:
                accuracy[v.id] = v.measured_accuracy
                if v.measured_latency_ms is not None:
                    timed[(target.device, v.id)] = v.measured_latency_ms
            ctx.progress(0.8 + 0.2 * (k + 1) / len(targets))
    return accuracy, timed


def _results(
    trained: TrainedJob,
    targets: list[Target],
    fronts: list[list[EvaluatedSubnet]],
    accuracy: dict[str, float],
    timed: dict[tuple[str, str], float],
) -> JobResults:
    space = trained.space
    unique: dict[str, EvaluatedSubnet] = {}
    for members in fronts:
        for subnet in members:
            unique.setdefault(subnet.id, subnet)
    archs = [space.arch_from_dict(s.arch) for s in unique.values()]
    macs, params = space.complexity_batch(archs) if archs else (np.zeros(0), np.zeros(0))
    predicted = {t.device: t.latency.estimator.predict(archs) if archs else [] for t in targets}
    subnets = [
        SubnetResult(
            arch_id=subnet.id,
            arch=arch.to_dict(),
            resolution=int(arch.resolution),
            macs=int(macs[i]),
            params=int(params[i]),
            predicted_accuracy=min(max(subnet.values["accuracy"], 0.0), 100.0),
            measured_accuracy=accuracy.get(subnet.id),
            latencies={
                t.device: LatencyResult(
                    predicted_ms=max(float(predicted[t.device][i]), 0.0),
                    measured_ms=timed.get((t.device, subnet.id)),
                )
                for t in targets
            },
        )
        for i, (subnet, arch) in enumerate(zip(unique.values(), archs, strict=True))
    ]
    by_id = {s.arch_id: s for s in subnets}
    front_results = [
        FrontResult(
            device=target.device,
            objectives=["accuracy", target.latency.name, "macs"],
            hypervolume=_hypervolume(space, target, members),
            budget=target.budget,
            members=[s.id for s in members],
            best=best_member([by_id[s.id] for s in members], target.device, target.budget),
        )
        for target, members in zip(targets, fronts, strict=True)
    ]
    return JobResults(subnets=subnets, fronts=front_results)


def best_member(
    members: list[SubnetResult], device: str, budget: dict[str, float | int] | None
) -> str | None:
    """The most accurate member within the budget, judged as a user reads the results:
    measured accuracy and latency where they were measured, predicted ones otherwise (the
    REST API picks the same way). None when every member breaks the budget as measured."""
    best: tuple[float, str] | None = None
    for subnet in members:
        accuracy = subnet.measured_accuracy
        accuracy = subnet.predicted_accuracy if accuracy is None else accuracy
        found = subnet.latencies.get(device)
        latency = None if found is None else found.measured_ms
        latency = found.predicted_ms if latency is None and found is not None else latency
        if accuracy is None:
            continue
        limit = None if budget is None else budget.get("latency_ms")
        if limit is not None and (latency is None or latency > limit):
            continue
        if budget and "macs" in budget and subnet.macs > budget["macs"]:
            continue
        if best is None or accuracy > best[0]:
            best = (accuracy, subnet.arch_id)
    return None if best is None else best[1]


def search_fronts(ctx: StageContext) -> Path:
    """Search, verify and write ``job_dir/results.json``; returns its path."""
    from workers.trained import load_trained

    request = ctx.request
    trained = load_trained(
        ctx.job_dir,
        space=request.space,
        preset=request.preset,
        dataset=request.dataset,
        data_root=request.data_root,
    )
    targets = _targets(ctx, trained.space)
    ctx.progress(0.1)
    fronts, traces = _search(ctx, trained, targets)
    accuracy, timed = _verify(ctx, trained, targets, fronts)
    results = _results(trained, targets, fronts, accuracy, timed)
    for front, trace in zip(results.fronts, traces, strict=True):
        best = None if front.best is None else results.subnet(front.best)
        summary = "" if best is None else f"; best {best.arch_id}"
        ctx.metrics(
            key=f"searching/{front.device}"[:64],
            message=f"{front.device}: {len(front.members)} subnets on the front{summary}",
            data={
                "device": front.device,
                "front_size": len(front.members),
                "hypervolume": front.hypervolume,
                "hypervolume_trace": [list(point) for point in trace],
                "budget": front.budget,
                "best": None if best is None else best.model_dump(mode="json"),
            },
        )
    path = ctx.job_dir / RESULTS_NAME
    write_results(results, path)
    return path
