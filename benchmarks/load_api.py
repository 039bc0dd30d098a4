"""Load on the real service, over loopback from a second process: reads of job lists and Pareto
fronts mixed with job submissions, on a database of 1,000 jobs and 5,000 subnets.

The database (a fresh SQLite file, or an empty PostgreSQL database given with
--database-url) gets 1,000 jobs in every state, 250 of them succeeded with 20 subnets each
(latencies on two devices, a Pareto front per device), written straight into the tables as the
searching stage leaves them. The service runs API only (no dispatcher) on a free loopback
port: ``python -m service`` (``--api-processes 1``, the default), or with ``--api-processes
N`` the production setting of docs/deploy.md, N API processes each with its own socket on
the one port (NAS_SHARE_PORT, SO_REUSEPORT: the kernel spreads the connections).
This process then sends, with ``--concurrency`` requests in flight, 10,000 reads (job list
pages of 50 with each job's full spec, lists filtered by state; all fronts of a job; one
front) and 500 submissions with an ``Idempotency-Key`` (every tenth one sent twice, as a
client retrying after a lost answer would). That round runs ``--repeats`` times (2: the
spread between rounds is the noise the figures carry), each with its own order and keys.
Prints, per round, p50/p95/p99/max latency per kind, the errors, the CPU time the service
(per process) and this load generator spent per request, and the machine's load average;
then checks that every accepted submission is stored exactly once.
Exit 1 on any error, a broken exactly-once check, or a round whose read p99 is over
``--target-p99-ms``.

    nice -n 10 .venv/bin/python benchmarks/load_api.py
    nice -n 10 .venv/bin/python benchmarks/load_api.py --api-processes 2   # docs/deploy.md
    nice -n 10 .venv/bin/python benchmarks/load_api.py --reads 300 --submissions 50   # smoke
    nice -n 10 .venv/bin/python benchmarks/load_api.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/nas_load
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, insert, select

import search_spaces
from nas.search.pareto import pareto_mask
from service.api.schemas.jobs import JobCreate
from service.db import create_db_engine
from service.migrate import upgrade_database
from service.models import Job, JobStage, ParetoFront, ParetoMember, Subnet, SubnetLatency
from service.settings import fingerprint

TOKEN = "load-token-0123456789abcdef"
DEVICES = ["host-cpu-onnxruntime", "host-cpu-torch"]
STAGES = ["training", "building_predictor", "searching", "exporting"]
SUBMIT_SPEC: dict[str, Any] = {
    "name": "load test",
    "space": "bignas",
    "dataset": {"kind": "synthetic", "num_samples": 200, "resolution": 24},
    "training": {"epochs": 1, "batch_size": 32, "sampler": "uniform", "warmup_epochs": 0},
}


# --- the database ----------------------------------------------------------------------------


def populate(url: str, *, jobs: int, subnets: int, per_job: int, seed: int = 0) -> list[int]:
    """Fill the tables in bulk; returns the ids of the jobs that have fronts."""
    rng = np.random.default_rng(seed)
    space = search_spaces.get("bignas", preset="tiny")
    archs: dict[str, Any] = {}
    while len(archs) < max(per_job, 64):
        arch = space.sample(rng)
        archs.setdefault(space.arch_id(arch), arch)
    pool = [
        (arch_id, arch.model_dump(mode="json"), arch.resolution, *space.complexity(arch))
        for arch_id, arch in archs.items()
    ]
    spec = JobCreate(
        name="digits on bignas",
        space="bignas",
        dataset={"kind": "digits"},
        devices=DEVICES,
        search={"budgets": {DEVICES[0]: {"latency_ms": 0.5}}},
    ).model_dump(mode="json")
    with_results = subnets // per_job
    now = datetime.now(UTC)
    job_rows = []
    for i in range(jobs):
        state = (
            "succeeded"
            if i < with_results
            else ["queued", "failed", "cancelled", "training", "succeeded"][i % 5]
        )
        terminal = state in {"succeeded", "failed", "cancelled"}
        created = now - timedelta(minutes=jobs - i)
        job_rows.append(
            {
                "name": f"job {i}",
                "owner": "local",
                "space": "bignas",
                "preset": "tiny",
                "spec": spec,
                "state": state,
                "stage": None if state == "queued" else "exporting",
                "progress": 100.0 if state == "succeeded" else 0.0,
                "error": "worker lost" if state == "failed" else None,
                "attempt": 0 if state == "queued" else 1,
                "created_at": created,
                "updated_at": created,
                "started_at": None if state == "queued" else created,
                "finished_at": created + timedelta(minutes=9) if terminal else None,
            }
        )
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Job), job_rows)
            ids = list(conn.scalars(select(Job.id).order_by(Job.id)))
            result_jobs = [ids[i] for i in range(with_results)]
            stage_rows = [
                {
                    "job_id": job_id,
                    "name": name,
                    "position": position,
                    "state": "succeeded",
                    "progress": 100.0,
                    "started_at": now,
                    "finished_at": now,
                }
                for job_id, row in zip(ids, job_rows, strict=True)
                if row["state"] == "succeeded"
                for position, name in enumerate(STAGES)
            ]
            conn.execute(insert(JobStage), stage_rows)
            subnet_rows = []
            for job_id in result_jobs:
                for arch_id, arch, resolution, macs, params in pool[:per_job]:
                    subnet_rows.append(
                        {
                            "job_id": job_id,
                            "arch_id": arch_id,
                            "arch": arch,
                            "resolution": resolution,
                            "macs": macs,
                            "params": params,
                            "predicted_accuracy": float(70 + 25 * rng.random()),
                            "measured_accuracy": None,
                            "created_at": now,
                        }
                    )
            conn.execute(insert(Subnet), subnet_rows)
            stored = conn.execute(
                select(Subnet.id, Subnet.job_id, Subnet.macs, Subnet.predicted_accuracy)
            ).all()
            by_job: dict[int, list[Any]] = defaultdict(list)
            for row in stored:
                by_job[row.job_id].append(row)
            latency_rows, front_rows = [], []
            members: dict[tuple[int, str], list[int]] = {}
            for job_id, rows in by_job.items():
                for d, device in enumerate(DEVICES):
                    latency = {r.id: (0.2 + d) * r.macs / 5e6 + 0.05 * rng.random() for r in rows}
                    for r in rows:
                        latency_rows.append(
                            {
                                "subnet_id": r.id,
                                "device": device,
                                "predicted_ms": latency[r.id],
                                "measured_ms": None,
                            }
                        )
                    points = np.array([[latency[r.id], -r.predicted_accuracy] for r in rows])
                    on_front = [
                        r for r, keep in zip(rows, pareto_mask(points), strict=True) if keep
                    ]
                    on_front.sort(key=lambda r: -r.predicted_accuracy)
                    members[(job_id, device)] = [r.id for r in on_front]
                    front_rows.append(
                        {
                            "job_id": job_id,
                            "device": device,
                            "objectives": ["accuracy", f"latency:{device}", "macs"],
                            "hypervolume": float(rng.random()),
                            "created_at": now,
                        }
                    )
            conn.execute(insert(SubnetLatency), latency_rows)
            conn.execute(insert(ParetoFront), front_rows)
            fronts = conn.execute(select(ParetoFront.id, ParetoFront.job_id, ParetoFront.device))
            member_rows = [
                {"front_id": front_id, "subnet_id": subnet_id, "position": position}
                for front_id, job_id, device in fronts
                for position, subnet_id in enumerate(members[(job_id, device)])
            ]
            conn.execute(insert(ParetoMember), member_rows)
    finally:
        engine.dispose()
    return result_jobs


# --- the service -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(
    url: str, root: Path, api_processes: int = 1
) -> tuple[list[subprocess.Popen[str]], str]:
    """The API (no dispatcher) on a free loopback port, up and answering in every process:
    ``python -m service``, or ``api_processes`` of them sharing the port (NAS_SHARE_PORT)."""
    port = _free_port()
    env = {
        **os.environ,
        "NAS_HOST": "127.0.0.1",
        "NAS_PORT": str(port),
        "NAS_DATABASE_URL": url,
        "NAS_ARTIFACT_DIR": str(root / "var"),
        "NAS_DATA_ROOT": str(root / "data"),
        "NAS_API_TOKENS": f'["{TOKEN}"]',
        "NAS_DISPATCHER_ENABLED": "false",
    }
    if api_processes > 1:
        env["NAS_SHARE_PORT"] = "true"  # each binds the port with SO_REUSEPORT
    command = [sys.executable, "-m", "service"]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(api_processes)
    ]
    log: list[str] = []
    started = threading.Event()

    def read_log(proc: subprocess.Popen[str]) -> None:  # to the end: a full pipe stalls it
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if sum("Application startup complete" in seen for seen in log) >= api_processes:
                started.set()

    for proc in procs:
        threading.Thread(target=read_log, args=(proc,), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90 + 30 * api_processes
    while True:
        try:
            if started.is_set() and httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return procs, base
        except httpx.TransportError:
            pass
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            raise SystemExit("service did not start:\n" + "".join(log[-50:]))
        time.sleep(0.2)


def stop_service(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) of a process and of each of its live descendants, from /proc
    (Linux; empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return {}
    for entry in entries:
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) "
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree = {pid}
    for _ in range(8):  # a few generations down: uvicorn's supervisor, its workers
        tree |= {child for child, (parent, _) in stats.items() if parent in tree}
    return {member: stats[member][1] for member in tree if member in stats}


def service_cpu(procs: list[subprocess.Popen[str]]) -> dict[int, float]:
    return {pid: spent for proc in procs for pid, spent in cpu_seconds(proc.pid).items()}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Seconds each process spent between two ``cpu_seconds``, most first."""
    spent = [after[pid] - before.get(pid, 0.0) for pid in after]
    return sorted((s for s in spent if s > 0), reverse=True)


# --- the load --------------------------------------------------------------------------------


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    created: Counter[str] = field(default_factory=Counter)


def plan(reads: int, submissions: int, result_jobs: list[int], seed: int) -> list[tuple[str, Any]]:
    """The requests in a random order: (kind, argument)."""
    rng = random.Random(seed)
    ops: list[tuple[str, Any]] = []
    for i in range(reads):
        kind = ("jobs", "jobs?state", "fronts", "front")[i % 4]
        ops.append((kind, rng.choice(result_jobs) if kind.startswith("front") else rng.random()))
    for i in range(submissions):
        ops.append(("submit", f"load-{seed}-{i}"))
        if i % 10 == 0:
            ops.append(("submit", f"load-{seed}-{i}"))  # a retry with the same key
    rng.shuffle(ops)
    return ops


def _request(client: httpx.AsyncClient, kind: str, arg: Any) -> Any:
    if kind == "jobs":
        return client.get("/api/v1/jobs", params={"limit": 50, "offset": int(arg * 1000)})
    if kind == "jobs?state":
        return client.get("/api/v1/jobs", params={"state": ["succeeded", "failed"], "limit": 20})
    if kind == "fronts":
        return client.get(f"/api/v1/jobs/{arg}/fronts")
    if kind == "front":
        return client.get(f"/api/v1/jobs/{arg}/fronts/{DEVICES[0]}")
    return client.post(
        "/api/v1/jobs",
        json=SUBMIT_SPEC,
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": arg},
    )


async def run_load(base: str, ops: list[tuple[str, Any]], concurrency: int) -> Outcome:
    outcome = Outcome()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    for op in ops:
        queue.put_nowait(op)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            kind, arg = queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await _request(client, kind, arg)
            except httpx.HTTPError as exc:
                outcome.errors[f"{kind}: {type(exc).__name__}"] += 1
                continue
            outcome.latencies[kind].append(time.perf_counter() - started)
            ok = {200, 201} if kind == "submit" else {200}
            if response.status_code not in ok:
                outcome.errors[f"{kind}: {response.status_code} {response.text[:120]}"] += 1
            elif kind == "submit":
                outcome.accepted[arg].add(response.json()["id"])
                outcome.created[arg] += response.status_code == 201

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return outcome


def check_exactly_once(url: str, outcome: Outcome, submissions: int) -> list[str]:
    """Every key answered with one job id, created once, stored as one row; nothing else."""
    problems = []
    for key, ids in outcome.accepted.items():
        if len(ids) != 1:
            problems.append(f"key {key} answered with jobs {sorted(ids)}")
        if outcome.created[key] != 1:
            problems.append(f"key {key} created {outcome.created[key]} times (201s)")
    if len(outcome.accepted) != submissions:
        problems.append(f"{len(outcome.accepted)} keys accepted of {submissions}")
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Job.idempotency_key, func.count(), func.min(Job.id))
                .where(Job.owner == fingerprint(TOKEN))
                .group_by(Job.idempotency_key)
            ).all()
    finally:
        engine.dispose()
    stored = {key: (count, job_id) for key, count, job_id in rows}
    if len(stored) != len(outcome.accepted):
        problems.append(f"{len(stored)} keys stored, {len(outcome.accepted)} accepted")
    for key, ids in outcome.accepted.items():
        count, job_id = stored.get(key, (0, None))
        if count != 1 or {job_id} != ids:
            problems.append(f"key {key}: {count} rows (job {job_id}), answered {sorted(ids)}")
    return problems


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def print_round(outcome: Outcome, requests: int, wall: float, cpu: dict[str, Any]) -> float:
    """The round's table; returns its read p99 (ms)."""
    service = sum(cpu["service"])
    split = (
        " (" + " / ".join(f"{s / service:.0%}" for s in cpu["service"]) + " by process)"
        if len(cpu["service"]) > 1
        else ""
    )
    print(
        f"{requests} requests in {wall:.1f} s ({requests / wall:.0f}/s); CPU per request: "
        f"service {service / requests * 1000:.2f} ms{split}, load generator "
        f"{cpu['client'] / requests * 1000:.2f} ms; load average {cpu['load']:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"{'kind':<12} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    reads: list[float] = []
    for kind in ("jobs", "jobs?state", "fronts", "front", "submit"):
        values = outcome.latencies.get(kind, [])
        if not values:
            continue
        if kind != "submit":
            reads += values
        print(
            f"{kind:<12} {len(values):>6} {_ms(values, 50):>8.1f} {_ms(values, 95):>8.1f} "
            f"{_ms(values, 99):>8.1f} {max(values) * 1000:>8.1f}"
        )
    if not reads:
        return float("inf")
    read_p99 = _ms(reads, 99)
    print(
        f"{'all reads':<12} {len(reads):>6} {_ms(reads, 50):>8.1f} {_ms(reads, 95):>8.1f} "
        f"{read_p99:>8.1f} {max(reads) * 1000:>8.1f}"
    )
    errors = sum(outcome.errors.values())
    print(f"errors: {errors}" + "".join(f"\n  {n} x {e}" for e, n in outcome.errors.items()))
    return read_p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--subnets", type=int, default=5000)
    parser.add_argument("--subnets-per-job", type=int, default=20)
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--target-p99-ms", type=float, default=50.0, help="for reads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="1: python -m service; N: N API processes on one port (SO_REUSEPORT), the "
        "production setting of docs/deploy.md",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds of the same load (the spread is the noise)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        url = args.database_url or f"sqlite:///{root / 'nas.db'}"
        started = time.perf_counter()
        upgrade_database(url)
        result_jobs = populate(
            url, jobs=args.jobs, subnets=args.subnets, per_job=args.subnets_per_job
        )
        print(
            f"database: {args.jobs} jobs, {len(result_jobs) * args.subnets_per_job} subnets "
            f"({len(result_jobs)} jobs with fronts on {len(DEVICES)} devices), "
            f"{url.split(':')[0]}, filled in {time.perf_counter() - started:.1f} s"
        )
        procs, base = start_service(url, root, args.api_processes)
        service = (
            "python -m service (1 process)"
            if args.api_processes == 1
            else f"{args.api_processes} API processes on one port (SO_REUSEPORT)"
        )
        print(f"service: {service} on loopback, concurrency {args.concurrency}")
        total = Outcome()
        p99s: list[float] = []
        try:
            with httpx.Client(base_url=base) as warm:  # first-request costs out of the figures
                for _ in range(2 * args.api_processes):
                    warm.get("/api/v1/jobs")
                    warm.get(f"/api/v1/jobs/{result_jobs[0]}/fronts")
            for round_ in range(args.repeats):
                ops = plan(args.reads, args.submissions, result_jobs, args.seed + round_)
                service_before, client_before = service_cpu(procs), time.process_time()
                started = time.perf_counter()
                outcome = asyncio.run(run_load(base, ops, args.concurrency))
                wall = time.perf_counter() - started
                cpu = {
                    "service": cpu_spent(service_before, service_cpu(procs)),
                    "client": time.process_time() - client_before,
                    "load": os.getloadavg()[0],
                }
                print(f"\nround {round_ + 1} of {args.repeats} (seed {args.seed + round_})")
                p99s.append(print_round(outcome, len(ops), wall, cpu))
                for kind, values in outcome.latencies.items():
                    total.latencies[kind] += values
                total.errors.update(outcome.errors)
                for key, ids in outcome.accepted.items():
                    total.accepted[key] |= ids
                total.created.update(outcome.created)
        finally:
            stop_service(procs)
        problems = check_exactly_once(url, total, args.submissions * args.repeats)

    errors = sum(total.errors.values())
    submitted = (args.submissions + len(range(0, args.submissions, 10))) * args.repeats
    retries = submitted - len(total.accepted)
    print(
        f"\nexactly once: {len(total.accepted)} keys accepted ({retries} retried), "
        + ("each stored once" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems[:20]))
    )
    worst = max(p99s) if p99s else float("inf")
    verdict = worst < args.target_p99_ms
    spread = f" (rounds: {', '.join(f'{p:.1f}' for p in p99s)} ms)" if len(p99s) > 1 else ""
    print(
        f"read p99 {worst:.1f} ms{spread}: {'within' if verdict else 'OVER'} "
        f"{args.target_p99_ms} ms; errors: {errors}"
    )
    return 0 if not errors and not problems and verdict else 1


if __name__ == "__main__":
    sys.exit(main())
