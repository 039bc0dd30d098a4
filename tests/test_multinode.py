"""A job on a two-node Ray cluster, on one machine: the cluster deployment of docs/deploy.md.

A Ray head (custom resource ``node_a``) and a second node (``node_b``) run as separate
``ray start --block`` processes, each in its own session and with none of the service's
``NAS_*`` settings (a worker node needs only the package and the head's address). The
controller (the app with its dispatcher, in this process) reaches them through
NAS_RAY_ADDRESS and keeps its records in PostgreSQL. The job trains with 2 Ray Train workers
under STRICT_SPREAD, which must land one on each node; both nodes and the controller share
NAS_ARTIFACT_DIR, as a shared mount does in a cluster. Teardown kills exactly the processes of
the two sessions this test started (never ``ray stop``, which would end every Ray on the host).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _jobs import wait_finished
from fastapi.testclient import TestClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "multinode-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOST = "host-cpu-torch"
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 60.0


@dataclass
class TwoNodeCluster:
    address: str
    head_node_id: str
    second_node_id: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_ports() -> list[str]:
    """Every port a node listens on, chosen free: two nodes share this host (and others' Ray,
    Redis, ... may run beside them), so no Ray default port can be assumed free."""
    flags = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    )
    return [f"{flag}={_free_port()}" for flag in flags]


def _session_pids(sessions: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) in sessions:
                    pids.append(int(entry))
    return pids


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """End the nodes: SIGTERM to each ``ray start`` process group, then SIGKILL to whatever is
    left in their sessions (raylet, GCS, Ray workers); nothing outside them is touched."""
    sessions = {p.pid for p in processes}  # each started with start_new_session=True
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while _session_pids(sessions) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _session_pids(sessions):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)


@pytest.fixture
def two_nodes() -> Iterator[TwoNodeCluster]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    # Short: Ray's Unix sockets live under it (108 characters at most).
    temp = Path(tempfile.mkdtemp(prefix="nas-ray-", dir="/tmp"))
    # The nodes run the driver's auth mode (conftest.py: token, as a real cluster runs it) and
    # share its token (~/.ray/auth_token, made here when missing).
    mode = os.environ.get("RAY_AUTH_MODE", "disabled")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAS_")}
    env.update(RAY_AUTH_MODE=mode, RAY_USAGE_STATS_ENABLED="0")
    if mode == "token":
        subprocess.run(
            [RAY, "get-auth-token", "--generate"], env=env, capture_output=True, check=True
        )
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    processes: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: str) -> None:
        processes.append(
            subprocess.Popen(
                [RAY, "start", *common, *_node_ports(), *args],
                cwd=temp,  # not the repository: the nodes import the installed package
                env=env,
                stdout=(temp / log).open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def failed(what: str) -> str:
        logs = "\n".join(
            (temp / n).read_text()[-2000:] for n in ("head.log", "node.log") if (temp / n).exists()
        )
        return f"{what}\n{logs}"

    try:
        start(
            [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                '--resources={"node_a": 1}',
            ],
            "head.log",
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(
            [RAY, "health-check", "--address", address], env=env, capture_output=True
        ).returncode:
            if processes[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(failed("the Ray head did not start"))
            time.sleep(0.5)
        start([f"--address={address}", '--resources={"node_b": 1}'], "node.log")
        ray.init(address=address, namespace="nas-service", log_to_driver=False)
        nodes: dict[str, str] = {}
        while len(nodes) < 2:
            if processes[1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(failed("the second Ray node did not join"))
            time.sleep(0.5)
            nodes = {
                name: node["NodeID"]
                for node in ray.nodes()
                if node["Alive"]
                for name in ("node_a", "node_b")
                if name in node["Resources"]
            }
        yield TwoNodeCluster(address, nodes["node_a"], nodes["node_b"])
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(processes)
        shutil.rmtree(temp, ignore_errors=True)


def _spec() -> dict[str, Any]:
    return {
        "name": "two nodes",
        "space": "ofa_mbv3",
        "dataset": {"kind": "digits"},
        "training": {
            "epochs": 1,
            "batch_size": 32,
            "warmup_epochs": 0,
            "schedule": "single_stage",
            "sampler": "uniform",
            "bn_recalibration_batches": 2,
        },
        "search": {"population": 8, "generations": 4, "evaluations": 10},
        "finetune": None,  # the training stage is what spans the nodes
        "devices": [HOST],
        "num_workers": 2,
        "placement": {"strategy": "STRICT_SPREAD", "resources_per_worker": {"CPU": 1}},
    }


def test_job_trains_across_two_ray_nodes(
    two_nodes: TwoNodeCluster,
    postgres_url: str,
    profiled_host_tables: Any,
    tmp_path: Path,
) -> None:
    from sqlalchemy import create_engine, func, select

    from service.app import create_app
    from service.migrate import upgrade_database
    from service.models import Artifact, ParetoFront, ParetoMember
    from service.settings import Settings

    upgrade_database(postgres_url)
    (tmp_path / "data").mkdir()
    # the host's table, profiled once for the run, where the job's searching stage looks for
    # it in the shared directory (not profiled again on a node)
    shutil.copytree(profiled_host_tables("ofa_mbv3"), tmp_path / "shared" / "artifacts" / "tables")
    settings = Settings(
        database_url=postgres_url,
        artifact_dir=tmp_path / "shared" / "artifacts",
        data_root=tmp_path / "data",
        ray_address=two_nodes.address,
        api_tokens=[TOKEN],
    )
    with TestClient(create_app(settings)) as client:
        submitted = client.post("/api/v1/jobs", json=_spec(), headers=AUTH)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        job = wait_finished(client, job_id)
        logs = client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1000}).json()["data"]
        assert job["state"] == "succeeded", (job["error"], [e["message"] for e in logs])

        # one training worker on each node
        workers = [
            e["data"] for e in logs if e["kind"] == "metrics" and e["data"].get("kind") == "worker"
        ]
        placed = {w["rank"]: w["node_id"] for w in workers}
        assert sorted(placed) == [0, 1]
        assert set(placed.values()) == {two_nodes.head_node_id, two_nodes.second_node_id}

        # the front, read back through the API, and the exported ONNX of its best subnet,
        # written on the cluster and served by the controller from the shared directory
        (front,) = client.get(f"/api/v1/jobs/{job_id}/fronts").json()["data"]
        assert front["device"] == HOST and front["members"]
        subnet = client.get(f"/api/v1/subnets/{front['best_subnet_id']}").json()
        (onnx,) = [a for a in subnet["artifacts"] if a["format"] == "onnx"]
        download = client.get(f"/api/v1/subnets/{subnet['id']}/download", params={"format": "onnx"})
        assert download.status_code == 200, download.text
        digest = hashlib.sha256(download.content).hexdigest()
        assert digest == onnx["sha256"] == download.headers["x-checksum-sha256"]

    # and the records are in PostgreSQL
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            members = conn.scalar(
                select(func.count())
                .select_from(ParetoMember)
                .join(ParetoFront, ParetoFront.id == ParetoMember.front_id)
                .where(ParetoFront.job_id == job_id)
            )
            files = conn.scalar(
                select(func.count()).select_from(Artifact).where(Artifact.job_id == job_id)
            )
    finally:
        engine.dispose()
    assert members == len(front["members"]) > 0
    assert files >= 2  # the supernet checkpoint and the exports
