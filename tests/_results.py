"""A finished search job's results written straight into the tables, as the searching stage
leaves them: real bignas/tiny archs with their analytic MACs and params, accuracies that grow
with MACs, latencies on both host devices, and each device's Pareto front made of the measured
subnets within its budget. A few subnets were only predicted (one of them predicted the most
accurate of all, within the budget): they are on no front.

The figures are made up (no training here); everything a test expects is computed from the
same rows by plain Python, independently of the service's queries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

import search_spaces
from nas.search.hypervolume import hypervolume
from nas.search.pareto import pareto_mask
from service.api.schemas.jobs import JobCreate
from service.db import create_db_engine, create_session_factory
from service.models import Artifact, Job, ParetoFront, ParetoMember, Subnet, SubnetLatency
from service.settings import Settings

ORT, TORCH = "host-cpu-onnxruntime", "host-cpu-torch"
DEVICES = [ORT, TORCH]
#: Subnets 0..MEASURED-1 have a measured accuracy; the one at UNMEASURED_FAVOURITE does not.
MEASURED = 10
UNMEASURED_FAVOURITE = 11


@dataclass
class Row:
    id: int
    arch_id: str
    macs: int
    params: int
    predicted: float | None
    measured: float | None
    latency: dict[str, tuple[float | None, float | None]]  # device -> (predicted, measured)

    @property
    def accuracy(self) -> float | None:
        return self.measured if self.measured is not None else self.predicted

    def latency_ms(self, device: str) -> float | None:
        predicted, measured = self.latency.get(device, (None, None))
        return measured if measured is not None else predicted


@dataclass
class Results:
    job_id: int
    rows: list[Row]
    fronts: dict[str, list[int]] = field(default_factory=dict)  # device -> ids along the front
    budget_ms: float = 0.0
    onnx_subnet: int = 0
    onnx_bytes: bytes = b""

    def by_id(self, subnet_id: int) -> Row:
        return next(r for r in self.rows if r.id == subnet_id)


def job_spec(budget_ms: float) -> dict[str, Any]:
    return JobCreate(
        name="digits on bignas",
        space="bignas",
        dataset={"kind": "digits"},
        training={"epochs": 2},
        search={
            "population": 16,
            "generations": 4,
            "evaluations": 20,
            "budgets": {ORT: {"latency_ms": budget_ms}},
        },
        devices=DEVICES,
    ).model_dump(mode="json")


def tiny_onnx() -> bytes:
    """A real ONNX model (a 10-way linear classifier) that onnxruntime can run."""
    weights = helper.make_tensor(
        "w", TensorProto.FLOAT, [16, 10], np.linspace(-1, 1, 160, dtype=np.float32)
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])],
        "subnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _sample_rows(count: int, seed: int) -> list[dict[str, Any]]:
    space = search_spaces.get("bignas", preset="tiny")
    rng = np.random.default_rng(seed)
    archs: dict[str, Any] = {}
    while len(archs) < count:
        arch = space.sample(rng)
        archs.setdefault(space.arch_id(arch), arch)
    complexity = {key: space.complexity(arch) for key, arch in archs.items()}
    low = min(c.macs for c in complexity.values())
    high = max(c.macs for c in complexity.values())
    rows = []
    for i, (arch_id, arch) in enumerate(archs.items()):
        macs, params = complexity[arch_id]
        predicted = 72.0 + 22.0 * (macs - low) / (high - low) + float(rng.normal(0, 1.5))
        ort = 0.25 + macs / 2.0e7 + float(rng.normal(0, 0.02))
        if i == UNMEASURED_FAVOURITE:  # the search's favourite: fast, predicted the best
            predicted, ort = 99.0, 0.26
        latency: dict[str, tuple[float | None, float | None]] = {
            ORT: (round(ort, 4), round(ort * 1.04, 4) if i % 2 == 0 else None),
        }
        if i != 3:  # one subnet was never timed with torch
            latency[TORCH] = (round(0.4 + macs / 1.5e7, 4), None)
        rows.append(
            {
                "arch_id": arch_id,
                "arch": arch.model_dump(mode="json"),
                "resolution": arch.resolution,
                "macs": macs,
                "params": params,
                # the last subnet has no accuracy at all; the first ten were measured on val
                "predicted": None if i == count - 1 else round(min(predicted, 99.0), 3),
                "measured": round(min(predicted, 99.0) - 0.4, 3) if i < MEASURED else None,
                "latency": latency,
            }
        )
    return rows


def _front(rows: list[Row], device: str, budget_ms: float | None) -> list[int]:
    """Ids of the measured subnets within the budget that no other beats on both measured
    accuracy and latency (measured where timed), most accurate first."""
    usable = [
        r
        for r in rows
        if r.measured is not None
        and r.latency_ms(device) is not None
        and (budget_ms is None or r.latency_ms(device) <= budget_ms)  # type: ignore[operator]
    ]
    values = np.array([[r.latency_ms(device), -r.measured] for r in usable], dtype=float)
    members = [r for r, keep in zip(usable, pareto_mask(values), strict=True) if keep]
    return [r.id for r in sorted(members, key=lambda r: (-r.measured, r.id))]  # type: ignore[operator]


def fill_results(settings: Settings, *, count: int = 14, seed: int = 3) -> Results:
    """A succeeded job with ``count`` subnets, two fronts and an exported ONNX file."""
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            raw = _sample_rows(count, seed)
            ort_latencies = sorted(r["latency"][ORT][0] for r in raw)
            budget_ms = round(ort_latencies[len(ort_latencies) // 2], 3)
            finished = datetime(2026, 11, 20, 12, tzinfo=UTC)
            job = Job(
                name="digits on bignas",
                owner="local",
                space="bignas",
                preset="tiny",
                spec=job_spec(budget_ms),
                state="succeeded",
                stage="exporting",
                progress=100.0,
                attempt=1,
                started_at=finished - timedelta(minutes=9),
                finished_at=finished,
            )
            session.add(job)
            session.flush()
            rows = []
            for item in raw:
                subnet = Subnet(
                    job_id=job.id,
                    arch_id=item["arch_id"],
                    arch=item["arch"],
                    resolution=item["resolution"],
                    macs=item["macs"],
                    params=item["params"],
                    predicted_accuracy=item["predicted"],
                    measured_accuracy=item["measured"],
                )
                session.add(subnet)
                session.flush()
                for device, (predicted, measured) in item["latency"].items():
                    session.add(
                        SubnetLatency(
                            subnet_id=subnet.id,
                            device=device,
                            predicted_ms=predicted,
                            measured_ms=measured,
                        )
                    )
                rows.append(
                    Row(
                        subnet.id,
                        item["arch_id"],
                        item["macs"],
                        item["params"],
                        item["predicted"],
                        item["measured"],
                        item["latency"],
                    )
                )
            results = Results(job_id=job.id, rows=rows, budget_ms=budget_ms)
            for device in DEVICES:
                ids = _front(rows, device, budget_ms if device == ORT else None)
                points = np.array(
                    [[results.by_id(i).latency_ms(device), -results.by_id(i).measured] for i in ids]  # type: ignore[operator]
                )
                front = ParetoFront(
                    job_id=job.id,
                    device=device,
                    objectives=["accuracy", f"latency:{device}"],
                    hypervolume=hypervolume(points, [5.0, 0.0]),
                )
                session.add(front)
                session.flush()
                for position, subnet_id in enumerate(ids):
                    session.add(
                        ParetoMember(front_id=front.id, subnet_id=subnet_id, position=position)
                    )
                results.fronts[device] = ids
            # The exporting stage's file for the most accurate subnet on the ORT front.
            chosen = results.fronts[ORT][0]
            content = tiny_onnx()
            relative = Path("jobs", str(job.id), "exports", "best", "subnet.onnx")
            path = settings.artifact_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            session.add(
                Artifact(
                    job_id=job.id,
                    subnet_id=chosen,
                    kind="onnx",
                    path=relative.as_posix(),
                    size_bytes=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                )
            )
            session.commit()
            results.onnx_subnet, results.onnx_bytes = chosen, content
            return results
    finally:
        engine.dispose()
