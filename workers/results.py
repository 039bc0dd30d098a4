"""What a job's search produced, as the searching stage writes it to ``job_dir/results.json``.

The runner never writes to the database: the controller reads this file when the stage
reports it (``workers.events.ResultsWritten``) and stores it (``service.store.results``).
Plain pydantic, no torch: the API process validates and serves these models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Where the searching stage writes the results, relative to the job directory.
RESULTS_NAME = "results.json"


class LatencyResult(BaseModel):
    """A subnet's latency on one device: from the device's table, and timed where it ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predicted_ms: float | None = Field(default=None, ge=0.0)
    measured_ms: float | None = Field(default=None, ge=0.0)


class FinetunedResult(BaseModel):
    """A subnet after the finetuning stage: its inherited weights trained on, standalone, with
    the recipe that won on holdout; ``accuracy`` is that winner's top-1 on val (measured)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy: float = Field(ge=0.0, le=100.0, description="Val top-1 after fine-tuning.")
    holdout_accuracy: float = Field(
        ge=0.0, le=100.0, description="The winner's holdout top-1: what chose it."
    )
    recipe: dict[str, float | int] = Field(
        description="lr, weight_decay, epochs, label_smoothing, kd_weight."
    )
    epochs: int = Field(ge=0, description="Epochs the winning trial ran.")
    trials: int = Field(ge=1, description="Recipes tried (Ray Tune trials).")
    stopped_early: int = Field(ge=0, description="Trials ASHA stopped before their epochs.")
    weights: str = Field(
        min_length=1, description="The fine-tuned state dict, relative to the job directory."
    )


class SubnetResult(BaseModel):
    """One subnet the job measured (a front's candidate, or a specialised one).

    ``predicted_accuracy`` is what the search believed (the fitted predictor, or the subnet's
    holdout measurement for strategies that measure); ``measured_accuracy`` is top-1 on val
    from the supernet after BN recalibration: fronts and picks are made from it.
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
    finetuned: FinetunedResult | None = Field(
        default=None, description="Set by the finetuning stage for the subnets it fine-tuned."
    )


class FrontResult(BaseModel):
    """The Pareto front of one device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    objectives: list[str]
    hypervolume: float | None = Field(
        default=None, description="Of the members' measured values (``shown_latency_ms``)."
    )
    budget: dict[str, float | int] | None = Field(
        default=None, description='{"latency_ms": 5.0}, {"macs": 2000000} or None.'
    )
    members: list[str] = Field(
        description="arch_ids of ``measured_front``, most accurate first (measured on val)."
    )
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


class LatencyFigures(Protocol):
    predicted_ms: float | None
    measured_ms: float | None


class SubnetFigures(Protocol):
    """What a front or a pick reads from a subnet: a ``SubnetResult`` here, the API's
    ``SubnetPublic`` in the service (one rule for both, so they never disagree)."""

    @property
    def measured_accuracy(self) -> float | None: ...
    @property
    def macs(self) -> int: ...
    @property
    def latencies(self) -> Mapping[str, LatencyFigures]: ...


S = TypeVar("S", bound=SubnetFigures)


def shown_latency_ms(subnet: SubnetFigures, device: str) -> float | None:
    """The latency a user is shown for ``device``: timed whole where it was (host devices),
    the device table's prediction otherwise (a device that is not this host)."""
    found = subnet.latencies.get(device)
    if found is None:
        return None
    return found.measured_ms if found.measured_ms is not None else found.predicted_ms


def within_budget(
    subnet: SubnetFigures, device: str, budget: Mapping[str, float | int] | None
) -> bool:
    """True when the subnet meets the budget as shown (``shown_latency_ms``, exact MACs)."""
    if budget and budget.get("latency_ms") is not None:
        latency = shown_latency_ms(subnet, device)
        if latency is None or latency > budget["latency_ms"]:
            return False
    return not (budget and budget.get("macs") is not None and subnet.macs > budget["macs"])


def front_objectives(device: str, budget: Mapping[str, float | int] | None) -> list[str]:
    """What a device's shown front trades accuracy against: the quantity its budget limits
    (MACs for a MACs budget), else its latency. Two axes, so the front is exactly the
    staircase a user sees when accuracy is drawn against that quantity."""
    if budget and budget.get("macs") is not None:
        return ["accuracy", "macs"]
    return ["accuracy", f"latency:{device}"]


def measured_front(
    subnets: Sequence[S], device: str, budget: Mapping[str, float | int] | None
) -> list[S]:
    """The Pareto front a user is shown for ``device``: among the subnets with a measured val
    accuracy that meet the budget as shown, those no other one beats on both accuracy and
    ``front_objectives``' cost (``shown_latency_ms`` or MACs); most accurate first (ties:
    cheaper, then fewer MACs). A prediction never places a subnet on it or picks it."""
    from nas.search.pareto import pareto_mask

    by_macs = front_objectives(device, budget)[1] == "macs"
    points = []
    for subnet in subnets:
        if subnet.measured_accuracy is None or not within_budget(subnet, device, budget):
            continue
        cost = float(subnet.macs) if by_macs else shown_latency_ms(subnet, device)
        if cost is not None:
            points.append((subnet, float(subnet.measured_accuracy), float(cost)))
    if not points:
        return []
    values = np.array([[-accuracy, cost] for _, accuracy, cost in points])
    members = [point for point, keep in zip(points, pareto_mask(values), strict=True) if keep]
    members.sort(key=lambda point: (-point[1], point[2], point[0].macs))
    return [subnet for subnet, _, _ in members]


def best_member(
    subnets: Sequence[S], device: str, budget: Mapping[str, float | int] | None
) -> S | None:
    """The most accurate measured subnet within the budget (the front's first member);
    None when no measured subnet meets it."""
    front = measured_front(subnets, device, budget)
    return front[0] if front else None


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
