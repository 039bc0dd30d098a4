"""Specialising a finished job for a new device or budget, in seconds, without retraining.

The job's supernet and fitted predictor are what the search needed; with a device's latency
table, a constrained evolution over the predictor proposes the most accurate subnets under
the new budget, which are then measured on val from the supernet (BN recalibrated) and, on a
host device, timed whole. They compete with the subnets the job already measured, judged the
way the job's fronts are (``workers.results``: measured accuracy, measured latency where it was
timed), so the answer never contradicts the job: a budget that a measured subnet of the job
meets is feasible, and the pick is at least as accurate as the job's best measured subnet
under it. A budget that neither the table nor a measurement meets is refused
(``InfeasibleBudgetError``, with the smallest reachable value). The API process calls this:
loaded jobs stay in a small LRU (``workers.trained``), so only the first request for a job
pays for loading it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.hardware.table import LatencyTable, check_table_for
from workers.results import LatencyResult, SubnetResult, within_budget
from workers.tables import host_table
from workers.trained import JobFiles

__all__ = [
    "SpecializeRequest",
    "SpecializedSubnet",
    "UnmetBudgetError",
    "export_subnet_files",
    "host_table",
    "host_table_for_job",
    "specialize",
]

#: Evolution settings: a second or two for a tiny preset, close to OFA's 500 generations.
POPULATION = 100
GENERATIONS = 150
#: The evolution's most accurate distinct subnets that are measured: under the budget, and
#: one under each tighter share of a latency budget in ``MARGINS``.
PROPOSALS = 4
MARGINS = (1.0, 0.93, 0.85)
#: The most subnets timed whole on a host device for one request (each takes a fraction of
#: a second): the job's own subnets that were never timed on it, most accurate first.
MAX_TIMED = 12
#: Seconds of timed runs per subnet on a host device.
TIMING_S = 0.25

Figure = Literal["measured", "predicted"]


class SpecializeRequest(BaseModel):
    """A finished job (its directory and spec), a device and exactly one new budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: JobFiles
    device: str = Field(min_length=1, max_length=64)
    table: LatencyTable | None = Field(description="None: a MACs budget only (no latency).")
    latency_ms: float | None = Field(default=None, gt=0.0, le=1e6)
    macs: int | None = Field(default=None, gt=0, le=10**15)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    known: list[SubnetResult] = Field(
        default_factory=list,
        description="The job's subnets with a measured val accuracy and what it knows of "
        "their latency on the device: they compete with the new proposals.",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        if (self.latency_ms is None) == (self.macs is None):
            raise ValueError("give exactly one of latency_ms or macs")
        if self.latency_ms is not None and self.table is None:
            raise ValueError(f"latency_ms: device {self.device!r} has no latency table here")
        if self.table is not None:
            check_table_for(self.table, self.job.space, self.job.preset)
            if self.table.device.name != self.device:
                raise ValueError(
                    f"table: measured on {self.table.device.name!r}, not on {self.device!r}"
                )
        return self

    @property
    def budget(self) -> dict[str, float | int]:
        if self.latency_ms is not None:
            return {"latency_ms": self.latency_ms}
        return {"macs": self.macs}  # type: ignore[dict-item]


class SpecializedSubnet(BaseModel):
    """The most accurate measured subnet under the budget, and how each figure was had."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnet: SubnetResult
    device: str
    budget: dict[str, float | int]
    figures: dict[str, Figure] = Field(
        description="accuracy: measured on val; latency_ms (when the device has a table): "
        "measured (timed whole on this host) or predicted (the device's table)."
    )
    from_job: bool = Field(description="The pick is a subnet the job had already measured.")
    candidates: int = Field(ge=0, description="Measured subnets compared, the job's included.")
    rescaled: float | None = Field(
        default=None,
        description="Set when every subnet first proposed was timed over the budget: the "
        "measured/predicted latency ratio by which the table was rescaled to propose again.",
    )
    seconds: float = Field(ge=0.0, description="Wall time of the request.")


def host_table_for_job(artifact_dir: Path, device: str, job: JobFiles) -> LatencyTable:
    """Built-in host ``device``'s table for a trained job: sized like the job's data (its
    classes and channels), so it is the cached table the job's search took, re-anchored when
    stale; a table for the preset's default head would be profiled anew (minutes). Long work
    (timing networks): the caller holds no database transaction through it."""
    trained = job.load()
    return host_table(
        artifact_dir,
        device,
        job.space,
        job.preset,
        num_classes=trained.space.num_classes,
        in_channels=trained.space.in_channels,
    )


class UnmetBudgetError(ValueError):
    """No measured subnet meets the budget: the table says none can, or every subnet it
    proposed was measured over it. The message names the closest measured figure."""


def _unmet(
    subnets: list[SubnetResult], device: str, budget: dict[str, float | int], why: str
) -> UnmetBudgetError:
    from workers.results import shown_latency_ms

    if "macs" in budget:
        closest = min((s.macs for s in subnets), default=None)
        shown = "" if closest is None else f"; the fewest MACs measured is {closest:,}"
    else:
        values = [shown_latency_ms(s, device) for s in subnets]
        closest = min((v for v in values if v is not None), default=None)
        shown = "" if closest is None else f"; the fastest measured on {device} is {closest:.3f} ms"
    return UnmetBudgetError(
        f"{why}: none of the {len(subnets)} measured subnets meets {budget}{shown}"
    )


def _with_device(subnet: SubnetResult, device: str, predicted_ms: float | None) -> SubnetResult:
    """``subnet`` with the table's prediction on ``device`` where it had none."""
    found = subnet.latencies.get(device)
    if predicted_ms is None or (found is not None and found.predicted_ms is not None):
        return subnet
    measured = None if found is None else found.measured_ms
    latency = LatencyResult(predicted_ms=max(predicted_ms, 0.0), measured_ms=measured)
    return subnet.model_copy(update={"latencies": {**subnet.latencies, device: latency}})


def _timed(subnet: SubnetResult, device: str, ms: float) -> SubnetResult:
    found = subnet.latencies.get(device)
    latency = LatencyResult(
        predicted_ms=None if found is None else found.predicted_ms, measured_ms=ms
    )
    return subnet.model_copy(update={"latencies": {**subnet.latencies, device: latency}})


def _proposals(trained: Any, objectives: list[Any], constraint: Any, seed: int) -> list[Any]:
    """The evolution's most accurate distinct subnets (predicted accuracy) under the budget
    and, for a latency budget, under ``MARGINS`` of it: a table's prediction is off by a few
    percent, so subnets right at the budget are often over it once timed."""
    from nas.search import (
        ConstrainedEvolution,
        Constraint,
        InfeasibleBudgetError,
        PredictedObjective,
        SearchProblem,
    )

    evolution = ConstrainedEvolution(population_size=POPULATION, generations=GENERATIONS)
    margins = MARGINS if constraint.objective.name.startswith("latency:") else (1.0,)
    unique: dict[str, Any] = {}
    for k, margin in enumerate(margins):
        limit = Constraint(constraint.objective, constraint.max_value * margin)
        try:
            problem = SearchProblem(
                trained.space, [PredictedObjective(trained.predictor), *objectives], [limit]
            )
        except InfeasibleBudgetError:
            if k == 0:
                raise
            break  # tighter margins are infeasible too
        result = evolution.run(problem, seed=seed)
        feasible = (s for s in result.subnets if s.feasible)
        wanted = len(unique) + (PROPOSALS - len(margins) + 1 if k == 0 else 1)
        for subnet in sorted(feasible, key=lambda s: -s.values["accuracy"]):
            if len(unique) == wanted:
                break
            unique.setdefault(subnet.id, subnet)
    return list(unique.values())


class _Judge:
    """Measures proposals (val accuracy; whole-network time on a host device) and picks the
    most accurate subnet within the budget among them and the job's known subnets. Keeps
    every subnet it judged, for the answer's count and an unmet budget's message."""

    def __init__(
        self,
        trained: Any,
        latency: Any,
        device: str,
        budget: dict[str, float | int],
        timer: Any,
    ) -> None:
        self.trained, self.latency, self.device, self.budget = trained, latency, device, budget
        self.timer = timer
        self.judged: list[SubnetResult] = []

    def _measure(self, proposals: list[Any]) -> list[SubnetResult]:
        space = self.trained.space
        archs = [space.arch_from_dict(s.arch) for s in proposals]
        if not archs:
            return []
        count_macs, count_params = space.complexity_batch(archs)
        measured = self.trained.measure_val(archs)
        latency = self.latency
        return [
            SubnetResult(
                arch_id=arch.id,
                arch=arch.to_dict(),
                resolution=int(arch.resolution),
                macs=int(count_macs[i]),
                params=int(count_params[i]),
                predicted_accuracy=min(max(proposal.values["accuracy"], 0.0), 100.0),
                measured_accuracy=float(measured[i]),
                latencies={}
                if latency is None
                else {
                    self.device: LatencyResult(predicted_ms=max(proposal.values[latency.name], 0.0))
                },
            )
            for i, (arch, proposal) in enumerate(zip(archs, proposals, strict=True))
        ]

    def pick(
        self, pool: dict[str, SubnetResult], proposals: list[Any], known: list[SubnetResult]
    ) -> SubnetResult | None:
        """Adds the measured ``proposals`` and ``known`` to ``pool`` (the job's row keeps what
        it measured) and returns the most accurate of the new entries within the budget,
        timing untimed ones on a host device (at most ``MAX_TIMED`` a call)."""
        fresh = {s.arch_id: s for s in self._measure(proposals) if s.arch_id not in pool}
        fresh.update({s.arch_id: s for s in known})
        pool.update(fresh)
        space, device, timed = self.trained.space, self.device, 0
        for subnet in sorted(fresh.values(), key=lambda s: -(s.measured_accuracy or 0.0)):
            found = subnet.latencies.get(device)
            if self.timer is not None and (found is None or found.measured_ms is None):
                if timed == MAX_TIMED:
                    continue
                ms = float(self.timer([space.arch_from_dict(subnet.arch)])[0])
                subnet, timed = _timed(subnet, device, ms), timed + 1
            self.judged.append(subnet)
            if within_budget(subnet, device, self.budget):
                return subnet
        return None

    def level(self) -> float | None:
        """Median measured/predicted latency of the subnets timed here (``fit_scale``, as an
        anchor is fitted): the table's level against this machine's now."""
        from nas.hardware.anchor import fit_scale

        timed = [s.latencies.get(self.device) for s in self.judged]
        pairs = [
            (t.predicted_ms, t.measured_ms) for t in timed if t and t.measured_ms and t.predicted_ms
        ]
        if not pairs:
            return None
        predicted, measured = zip(*pairs, strict=True)
        return fit_scale(predicted, measured)[0]


def specialize(request: SpecializeRequest) -> SpecializedSubnet:
    """The best measured subnet of ``request.job`` for ``request.device`` under the new
    budget: the evolution's proposals and the job's own measured subnets, judged alike."""
    from nas.search import (
        Constraint,
        InfeasibleBudgetError,
        MacsObjective,
    )
    from workers.search import host_latency, latency_objective

    started = time.perf_counter()
    device, budget = request.device, request.budget
    trained = request.job.load()
    space = trained.space
    macs = MacsObjective(space)
    latency = None if request.table is None else latency_objective(space, request.table)
    if request.latency_ms is not None:
        assert latency is not None  # the request's validator saw to it
        constraint = Constraint(latency, request.latency_ms)
    else:
        constraint = Constraint(macs, float(request.macs))  # type: ignore[arg-type]
    cheap = [o for o in (latency, macs) if o is not None]

    def predicted_ms(archs: list[Any]) -> list[float | None]:
        if latency is None or not archs:
            return [None] * len(archs)
        return [float(v) for v in latency.estimator.predict(archs)]

    known_archs = [space.arch_from_dict(s.arch) for s in request.known]
    known = [
        _with_device(s, device, ms)
        for s, ms in zip(request.known, predicted_ms(known_archs), strict=True)
    ]
    try:
        proposals = _proposals(trained, cheap, constraint, request.seed)
    except InfeasibleBudgetError as exc:
        # the table says no subnet fits; a subnet the job measured under the budget says
        # otherwise, and a measurement outranks a prediction
        if not known:
            raise
        if not any(within_budget(s, device, budget) for s in known):
            raise _unmet(known, device, budget, str(exc)) from None
        proposals = []
    pool: dict[str, SubnetResult] = {}
    with trained.lock:
        timer = None
        if request.table is not None:
            timer = host_latency(space, trained.val.supernet, request.table, budget_s=TIMING_S)
        judge = _Judge(trained, latency, device, budget, timer)
        chosen = judge.pick(pool, proposals, known)
    rescaled = None
    level = judge.level() if chosen is None else None
    if chosen is None and request.latency_ms is not None and level is not None and level > 1:
        # every proposal was timed over the budget: the table's level is off this machine's
        # now (its ranking holds), so propose again under the budget at the level just
        # measured, once. The evolution needs no lock; measuring and timing do.
        assert latency is not None
        rescaled = level
        again = Constraint(latency, request.latency_ms / level)
        try:
            more = _proposals(trained, cheap, again, request.seed + 1)
        except InfeasibleBudgetError:
            more = []
        with trained.lock:
            chosen = judge.pick(pool, more, [])
    if chosen is None:
        why = f"the device's table predicted subnets under {budget}, but measured"
        if rescaled is not None:
            why += f" (and again with its latencies rescaled by the measured {rescaled:.2f}x)"
        raise _unmet(judge.judged, device, budget, why)
    found = chosen.latencies.get(device)
    figures: dict[str, Figure] = {"accuracy": "measured"}
    if found is not None:
        figures["latency_ms"] = "measured" if found.measured_ms is not None else "predicted"
    return SpecializedSubnet(
        subnet=chosen,
        device=device,
        budget=budget,
        figures=figures,
        from_job=chosen.arch_id in {s.arch_id for s in request.known},
        candidates=len(pool),
        rescaled=rescaled,
        seconds=time.perf_counter() - started,
    )


def export_subnet_files(
    job: JobFiles,
    *,
    arch: dict[str, Any],
    formats: Sequence[str],
    out_dir: Path,
    weights: Literal["inherited", "finetuned"] = "inherited",
) -> dict[str, Any]:
    """Export any subnet of a trained job with ``nas.export``; format ->
    ``nas.export.ExportedFile``. ``inherited``: the supernet's weights, BN recalibrated;
    ``finetuned``: the weights the finetuning stage trained for this subnet."""
    from nas.export import FORMATS, export_subnet

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: {unknown or 'none given'}; allowed values: {list(FORMATS)}")
    trained = job.load()
    subnet = trained.space.arch_from_dict(arch)
    if weights == "finetuned":
        from workers.finetuning import load_finetuned

        found = load_finetuned(job.job_dir, trained, subnet)
        if found is None:
            raise ValueError(f"weights: subnet {subnet.id} was not fine-tuned in {job.job_dir}")
        model = found
    else:
        model = trained.extract(subnet)
    return dict(
        export_subnet(
            model,
            arch=subnet.to_dict(),
            space=job.space,
            preset=job.preset,
            resolution=int(subnet.resolution),
            in_channels=trained.data.in_channels,
            num_classes=trained.data.num_classes,
            out_dir=Path(out_dir),
            formats=list(formats),  # type: ignore[arg-type]
            stem="subnet",
            metadata={"arch_id": subnet.id, "weights": weights},
            dataset=job.dataset,
        )
    )
