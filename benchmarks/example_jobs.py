"""Every shipped example job, end to end through the REST API, as a new user runs them.

For each ``examples/digits-*.yaml``: a fresh service (SQLite, local Ray) runs the job, then the
table prints what a user should check before trusting its output: the trained supernet's max
and min subnets on val (the training health gate's measurements, against chance), the
accuracy predictor's holdout Kendall tau and RMSE, and per device the front's size, the best
subnet's measured val accuracy and measured latency against the budget, how many measured
subnets break the budget (a budget that none breaks does not constrain), and the job's wall
time. Run on a quiet machine; the 2-core CI machine takes minutes per job.

    python benchmarks/example_jobs.py                       # all five
    python benchmarks/example_jobs.py --examples examples/digits-nasnet.yaml
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.client import Client
from service.commands.demo import local_service

EXAMPLES = sorted(Path(__file__).resolve().parents[1].glob("examples/digits-*.yaml"))


def _metrics(client: Client, job_id: int) -> list[dict[str, Any]]:
    """The data of every metrics event of the job, oldest first."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.logs(job_id, after=after, limit=500)
        found += [e["data"] or {} for e in page["data"] if e["kind"] == "metrics"]
        if not page["data"] or page["next_after"] == after:
            return found
        after = page["next_after"]


def _check(metrics: list[dict[str, Any]], gate: str, name: str) -> float | None:
    """A health gate's measured figure (``workers.health``: one event per gate)."""
    for data in metrics:
        if data.get("gate") == gate:
            for check in data.get("checks", []):
                if check.get("check") == name:
                    return check.get("value")
    return None


def _holdout(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The predictor's holdout report (the building_predictor stage's data point)."""
    found = [d for d in metrics if "kendall_tau" in d and "rmse" in d and "gate" not in d]
    return found[-1] if found else {}


def _over_budget(client: Client, job_id: int, device: str, budget: dict[str, Any]) -> str:
    """Measured subnets breaking the budget, of all measured subnets with a latency there."""
    if budget.get("latency_ms") is None:
        return "-"
    everything = client.subnets(job_id, device=device, min_accuracy=0, limit=1)["count"]
    within = client.subnets(
        job_id, device=device, min_accuracy=0, max_latency_ms=budget["latency_ms"], limit=1
    )["count"]
    return f"{everything - within}/{everything}"


def _seconds(job: dict[str, Any]) -> float | None:
    if not job.get("started_at") or not job.get("finished_at"):
        return None
    started = datetime.fromisoformat(job["started_at"])
    return (datetime.fromisoformat(job["finished_at"]) - started).total_seconds()


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run(client: Client, example: Path) -> list[str]:
    """One table row per device of the example's job."""
    job = client.submit(example)
    job = client.watch(job["id"], poll_s=2.0, timeout_s=3600)
    metrics = _metrics(client, job["id"])
    holdout = _holdout(metrics)
    common = [
        example.stem.removeprefix("digits-"),
        job["state"] + (f" ({len(job['warnings'])} warnings)" if job.get("warnings") else ""),
        _fmt(_check(metrics, "training", "max_subnet_vs_chance")),
        _fmt(_check(metrics, "training", "min_subnet_vs_chance")),
        _fmt(holdout.get("kendall_tau"), 3),
        _fmt(holdout.get("rmse")),
    ]
    fronts = client.fronts(job["id"]) if job["state"] == "succeeded" else []
    rows = []
    for front in fronts or [None]:
        if front is None:
            rows.append([*common, "-", "-", "-", "-", "-", "-", _fmt(_seconds(job), 0)])
            continue
        device, budget = front["device"], front["budget"] or {}
        best = next((m for m in front["members"] if m["id"] == front["best_subnet_id"]), None)
        latency = None if best is None else best["latencies"].get(device, {})
        shown = None
        if latency:
            shown = latency.get("measured_ms")
            shown = f"{shown:.3f}" if shown is not None else f"{latency['predicted_ms']:.3f} (pred)"
        rows.append(
            [
                *common,
                device.removeprefix("host-cpu-"),
                str(len(front["members"])),
                _fmt(None if best is None else best["measured_accuracy"]),
                shown or "-",
                _fmt(budget.get("latency_ms"), 3),
                _over_budget(client, job["id"], device, budget),
                _fmt(_seconds(job), 0),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", type=Path, default=EXAMPLES)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-examples"))
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    header = [
        "example", "state", "max subnet %", "min subnet %", "predictor tau", "RMSE",
        "device", "front", "best %", "best ms", "budget ms", "over budget", "wall s",
    ]  # fmt: skip
    rows = []
    started = time.monotonic()
    with local_service(args.workdir) as client:
        for example in args.examples:
            rows.extend(run(client, example))
            print(f"{example.stem}: done after {time.monotonic() - started:.0f} s", flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(
        "best % and ms: measured (val, timed whole); max/min subnet: the training health "
        "gate's val measurement; over budget: measured subnets over it / all measured"
    )


if __name__ == "__main__":
    main()
