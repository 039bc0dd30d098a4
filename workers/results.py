"""What a job's search produced, as the searching stage writes it to ``job_dir/results.json``.

The runner never writes to the database: the controller reads this file when the stage
reports it (``workers.events.ResultsWritten``) and stores it (``service.store.results``).
Plain pydantic, no torch: the API process validates and serves these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Where the searching stage writes the results, relative to the job directory.
RESULTS_NAME = "results.json"


class LatencyResult(BaseModel):
    """A subnet's latency on one device: from the device's table, and timed where it ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predicted_ms: float | None = Field(default=None, ge=0.0)
    measured_ms: float | None = Field(default=None, ge=0.0)


class SubnetResult(BaseModel):
    """One subnet of a front (or a specialised one).

    ``predicted_accuracy`` is what the search believed (the fitted predictor, or the subnet's
    holdout measurement for strategies that measure); ``measured_accuracy`` is top-1 on val
    from the supernet after BN recalibration, for the subnets that were verified.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch_id: str = Field(min_length=1, max_length=128)
    arch: dict[str, Any]
    resolution: int = Field(gt=0)
    macs: int = Field(ge=0)
    params: int = Field(ge=0)
    predicted_accuracy: float | None = Field(default=None, ge=0.0, le=100.0)
    measured_accuracy: float | None = Field(default=None, ge=0.0, le=100.0)
    latencies: dict[str, LatencyResult] = Field(
        default_factory=dict, description="Device name -> latency on it."
    )


class FrontResult(BaseModel):
    """The Pareto front of one device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    objectives: list[str]
    hypervolume: float | None = None
    budget: dict[str, float | int] | None = Field(
        default=None, description='{"latency_ms": 5.0}, {"macs": 2000000} or None.'
    )
    members: list[str] = Field(description="arch_ids ordered by the first objective, best first.")
    best: str | None = Field(description="The most accurate member within the budget.")


class JobResults(BaseModel):
    """Every front of a job and the subnets on them (each subnet once)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnets: list[SubnetResult]
    fronts: list[FrontResult]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [s.arch_id for s in self.subnets]
        if len(set(ids)) != len(ids):
            raise ValueError("subnets: each arch_id may appear once")
        known = set(ids)
        devices = [f.device for f in self.fronts]
        if len(set(devices)) != len(devices):
            raise ValueError("fronts: one front per device")
        for front in self.fronts:
            missing = [a for a in [*front.members, front.best] if a is not None and a not in known]
            if missing:
                raise ValueError(f"fronts: {front.device} names unknown subnets {missing[:3]}")
            if front.best is not None and front.best not in front.members:
                raise ValueError(f"fronts: best of {front.device} is not one of its members")
        return self

    def subnet(self, arch_id: str) -> SubnetResult:
        for subnet in self.subnets:
            if subnet.arch_id == arch_id:
                return subnet
        raise KeyError(arch_id)


def read_results(path: Path) -> JobResults:
    """A ``results.json``; ``ValueError`` (with the file named) when it is not valid."""
    try:
        return JobResults.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not valid job results ({exc})") from exc


def write_results(results: JobResults, path: Path) -> None:
    """Write atomically: a reader never sees half a file (the controller reads it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(results.model_dump_json(indent=1))
    partial.replace(path)
