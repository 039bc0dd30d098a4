"""A whole search job, as the CLI and (later) the job runner call it: budgets checked first,
then the accuracy dataset on the Ray actor pool, a predictor, one search per device, and the
chosen subnets re-measured on val.

With LINAS (the default) there is no separate dataset: LINAS measures its own subnets round
by round on the same actor pool, ``num_subnets`` being its budget. The other strategies search
on a predictor fitted to ``num_subnets`` stratified subnets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.data import DatasetSpec
from nas.predictors import AccuracyDataset, PredictorReport, PredictorSpec
from nas.search import SearchResult, StrategySpec, VerifiedSubnet

StageProgress = Callable[[str, int, int], None]
"""Called with (stage, done, total): "dataset", "search:<device>", "verify"."""
RESULT_NAME = "search.json"


class DeviceBudget(BaseModel):
    """A target device, its latency table and the latency budget on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Path = Field(description="The device's latency table (nas device profile --out).")
    latency_ms: float = Field(gt=0.0, le=1e6)


class SearchJob(BaseModel):
    """What ``nas search`` runs: a trained job directory and the devices to search for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str
    preset: str = "tiny"
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    job_dir: Path = Field(description="The training output directory (holds latest.pt).")
    devices: list[DeviceBudget] = Field(min_length=1)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    predictor: PredictorSpec | None = Field(
        default=None, description="None: ridge inside LINAS, auto for a fitted predictor."
    )
    num_subnets: int = Field(default=100, ge=10, le=100_000, description="Measured subnets.")
    verify: int = Field(default=5, ge=0, le=10_000, description="Front subnets re-measured.")
    seed: int = Field(default=0, ge=0)
    num_actors: int = Field(default=2, ge=1, le=1024)


class DeviceFront(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str
    latency_ms: float
    result: SearchResult
    verified: list[VerifiedSubnet]


class SearchReport(BaseModel):
    """Everything a search job produced; written as ``job_dir/search.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: SearchJob
    dataset: AccuracyDataset | None
    predictor: PredictorReport | None
    fronts: list[DeviceFront]


def latency_objective(space: Any, table: Any) -> Any:
    """``latency:<device>`` from a device's table (``nas.hardware.LatencyTable``)."""
    from nas.hardware import LatencyPredictor
    from nas.search import LatencyObjective

    return LatencyObjective(LatencyPredictor(table, space), device=table.device.name)


def _latency_objectives(space: Any, job: SearchJob) -> list[Any]:
    from nas.hardware import read_table
    from nas.search import Constraint, SearchProblem

    objectives = []
    for budget in job.devices:
        latency = latency_objective(space, read_table(budget.table))
        # refuse an infeasible budget before anything is measured
        SearchProblem(space, [latency], [Constraint(latency, budget.latency_ms)])
        objectives.append(latency)
    return objectives


def remembered(
    measure: Callable[[Sequence[Any]], np.ndarray], known: dict[str, float] | None = None
) -> Callable[..., np.ndarray]:
    """Measure each network once across the per-device searches (by arch id); ``known``
    holds values measured before (the accuracy dataset, on the same split)."""
    known = {} if known is None else dict(known)

    def cached(archs: Sequence[Any]) -> np.ndarray:
        ids = [a.id for a in archs]
        todo = [a for a, i in zip(archs, ids, strict=True) if i not in known]
        if todo:
            known.update(zip([a.id for a in todo], measure(todo).tolist(), strict=True))
        return np.array([known[i] for i in ids])

    return cached


def host_latency(
    space: Any, supernet: Any, table: Any, *, budget_s: float = 1.0
) -> Callable[..., np.ndarray] | None:
    """Whole-network latency of archs, measured here, when the table is of a host device
    (``host-cpu-torch``, ``host-cpu-onnxruntime``); ``None`` for devices elsewhere.
    ``budget_s``: seconds of timed runs per network at most."""
    from nas.hardware import TimingPolicy, builtin_devices
    from nas.hardware.profile import Profiler

    if table.device.name not in builtin_devices():
        return None
    profiler = Profiler(table.device)

    def measure(archs: Sequence[Any]) -> np.ndarray:
        found = profiler.measure_networks(space, supernet, archs, TimingPolicy(budget_s=budget_s))
        return np.array([m.median_ms if table.statistic == "median" else m.min_ms for m in found])

    return measure


def run_search_job(
    job: SearchJob, *, data_root: str | Path | None = None, progress: StageProgress | None = None
) -> SearchReport:
    """Run ``job`` (Ray: the connected cluster, or a local one) and write its report."""
    import search_spaces
    from nas.data import load_dataset
    from nas.predictors import SupernetAccuracy, holdout_report
    from nas.search import (
        Constraint,
        MacsObjective,
        MeasuredObjective,
        PredictedObjective,
        SearchProblem,
        verify_subnets,
    )
    from nas.training import load_checkpoint
    from workers.accuracy import AccuracyDatasetJob, SubnetEvaluatorPool, choose_archs

    report = progress or (lambda stage, done, total: None)
    data = load_dataset(job.dataset, data_root=data_root)
    space = search_spaces.get(
        job.space, preset=job.preset, num_classes=data.num_classes, in_channels=data.in_channels
    )
    latencies = _latency_objectives(space, job)
    strategy_options = dict(job.strategy.options)
    linas = job.strategy.kind == "linas"
    if linas:
        strategy_options.setdefault("max_evaluations", job.num_subnets)
        if job.predictor is not None:
            strategy_options.setdefault("predictor", job.predictor.model_dump())
    strategy = StrategySpec(kind=job.strategy.kind, options=strategy_options).build()
    accuracy_job = AccuracyDatasetJob(
        space=job.space,
        preset=job.preset,
        dataset=job.dataset,
        checkpoint=job.job_dir,
        num_subnets=job.num_subnets,
        seed=job.seed,
        num_actors=job.num_actors,
    )
    dataset, predictor_report = None, None
    fronts: list[tuple[Any, float, SearchResult]] = []
    with SubnetEvaluatorPool(accuracy_job, data_root=data_root) as pool:
        if linas:
            accuracy: Any = MeasuredObjective(remembered(pool.accuracies))
        else:
            records = pool.measure(choose_archs(accuracy_job), lambda d, t: report("dataset", d, t))
            dataset = AccuracyDataset(
                space=job.space, preset=job.preset, split="holdout", records=records
            )
            x, y = dataset.arrays(space)
            spec = job.predictor or PredictorSpec(kind="auto", seed=job.seed)
            predictor_report = holdout_report(spec.build(), x, y, seed=job.seed)
            accuracy = PredictedObjective(spec.build().fit(x, y))
        for latency, budget in zip(latencies, job.devices, strict=True):
            problem = SearchProblem(
                space,
                [accuracy, latency, MacsObjective(space)],
                [Constraint(latency, budget.latency_ms)],
            )
            stage = f"search:{latency.device}"
            result = strategy.run(
                problem, seed=job.seed, progress=lambda d, t, s=stage: report(s, d, t)
            )
            fronts.append((latency, budget.latency_ms, result))
    measure = SupernetAccuracy.from_checkpoint(
        space, data, load_checkpoint(job.job_dir), split="val"
    )
    out = []
    for i, (latency, budget_ms, result) in enumerate(fronts):
        chosen = sorted(result.front(), key=lambda s: -s.values["accuracy"])[: job.verify]
        timer = host_latency(space, measure.supernet, latency.estimator.table)
        verified = verify_subnets(
            space,
            chosen,
            measure,
            measure_latency=timer,
            latency=latency.name if timer is not None else None,
        )
        report("verify", i + 1, len(fronts))
        out.append(
            DeviceFront(
                device=latency.device, latency_ms=budget_ms, result=result, verified=verified
            )
        )
    result_report = SearchReport(job=job, dataset=dataset, predictor=predictor_report, fronts=out)
    (Path(job.job_dir) / RESULT_NAME).write_text(result_report.model_dump_json(indent=1))
    return result_report
