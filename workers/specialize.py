"""Specialising a finished job for a new device or budget, in seconds, without retraining.

The job's supernet and fitted predictor are what the search needed; with a device's latency
table, a constrained evolution over the predictor finds the most accurate subnet under the
new budget, which is then measured on val from the supernet (BN recalibrated). An infeasible
budget is refused before anything is loaded beyond the data (``InfeasibleBudgetError``, with
the smallest reachable value). The API process calls this: loaded jobs stay in a small LRU
(``workers.trained``), so only the first request for a job pays for loading it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.data import DatasetSpec
from nas.hardware.table import LatencyTable, check_table_for
from workers.results import LatencyResult, SubnetResult
from workers.tables import host_table

__all__ = [
    "SpecializeRequest",
    "SpecializedSubnet",
    "export_subnet_files",
    "host_table",
    "specialize",
]

#: Evolution settings: a second or two for a tiny preset, close to OFA's 500 generations.
POPULATION = 100
GENERATIONS = 150


class SpecializeRequest(BaseModel):
    """A finished job (its directory and spec), a device and exactly one new budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_dir: Path
    space: str
    preset: str
    dataset: DatasetSpec
    data_root: Path
    device: str = Field(min_length=1, max_length=64)
    table: LatencyTable | None = Field(description="None: a MACs budget only (no latency).")
    latency_ms: float | None = Field(default=None, gt=0.0, le=1e6)
    macs: int | None = Field(default=None, gt=0, le=10**15)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        if (self.latency_ms is None) == (self.macs is None):
            raise ValueError("give exactly one of latency_ms or macs")
        if self.latency_ms is not None and self.table is None:
            raise ValueError(f"latency_ms: device {self.device!r} has no latency table here")
        if self.table is not None:
            check_table_for(self.table, self.space, self.preset)
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
    """The most accurate subnet found under the budget, with its val accuracy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnet: SubnetResult
    device: str
    budget: dict[str, float | int]
    seconds: float = Field(ge=0.0, description="Wall time of the request.")


def _trained(job_dir: Path, space: str, preset: str, dataset: DatasetSpec, data_root: Path) -> Any:
    from workers.trained import load_trained

    return load_trained(job_dir, space=space, preset=preset, dataset=dataset, data_root=data_root)


def specialize(request: SpecializeRequest) -> SpecializedSubnet:
    """The best subnet of ``request.job_dir`` for ``request.device`` under the new budget."""
    from nas.search import (
        ConstrainedEvolution,
        Constraint,
        MacsObjective,
        PredictedObjective,
        SearchProblem,
    )
    from workers.search import latency_objective

    started = time.perf_counter()
    trained = _trained(
        request.job_dir, request.space, request.preset, request.dataset, request.data_root
    )
    space = trained.space
    macs = MacsObjective(space)
    latency = None if request.table is None else latency_objective(space, request.table)
    if request.latency_ms is not None:
        assert latency is not None  # the request's validator saw to it
        constraint = Constraint(latency, request.latency_ms)
    else:
        constraint = Constraint(macs, float(request.macs))  # type: ignore[arg-type]
    cheap = [o for o in (latency, macs) if o is not None]
    SearchProblem(space, cheap, [constraint])  # refuses an infeasible budget before loading
    problem = SearchProblem(space, [PredictedObjective(trained.predictor), *cheap], [constraint])
    evolution = ConstrainedEvolution(population_size=POPULATION, generations=GENERATIONS)
    best = evolution.run(problem, seed=request.seed).best_subnet()
    if best is None:  # cannot happen: the min subnet is feasible under an accepted budget
        raise RuntimeError("search found no subnet within the budget")
    arch = space.arch_from_dict(best.arch)
    measured = float(trained.measure_val([arch])[0])
    count_macs, count_params = space.complexity_batch([arch])
    latencies = {}
    if latency is not None:
        latencies[request.device] = LatencyResult(
            predicted_ms=max(best.values[latency.name], 0.0), measured_ms=None
        )
    subnet = SubnetResult(
        arch_id=arch.id,
        arch=arch.to_dict(),
        resolution=int(arch.resolution),
        macs=int(count_macs[0]),
        params=int(count_params[0]),
        predicted_accuracy=min(max(best.values["accuracy"], 0.0), 100.0),
        measured_accuracy=measured,
        latencies=latencies,
    )
    return SpecializedSubnet(
        subnet=subnet,
        device=request.device,
        budget=request.budget,
        seconds=time.perf_counter() - started,
    )


def export_subnet_files(
    job_dir: Path,
    *,
    space: str,
    preset: str,
    dataset: DatasetSpec,
    data_root: Path,
    arch: dict[str, Any],
    formats: Sequence[str],
    out_dir: Path,
) -> dict[str, Any]:
    """Export any subnet of a trained job (BN recalibrated) with ``nas.export``; format ->
    ``nas.export.ExportedFile``."""
    from nas.export import FORMATS, export_subnet

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: {unknown or 'none given'}; allowed values: {list(FORMATS)}")
    trained = _trained(Path(job_dir), space, preset, dataset, data_root)
    subnet = trained.space.arch_from_dict(arch)
    model = trained.extract(subnet)
    return dict(
        export_subnet(
            model,
            arch=subnet.to_dict(),
            space=space,
            preset=preset,
            resolution=int(subnet.resolution),
            in_channels=trained.data.in_channels,
            num_classes=trained.data.num_classes,
            out_dir=Path(out_dir),
            formats=list(formats),  # type: ignore[arg-type]
            stem="subnet",
            metadata={"arch_id": subnet.id},
            dataset=dataset,
        )
    )
