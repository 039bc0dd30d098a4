"""Injected faults, each in the middle of a real tiny job on a real Ray (issue 11):

1. a Ray Train worker process is SIGKILLed mid-training: Ray Train restarts the workers from
   the last registered checkpoint, the job succeeds in its first attempt, its log says so, and
   its final metrics and weights match an undisturbed run of the same seed;
2. the service process is SIGKILLed mid-job and started again: its local Ray died with it
   (nothing of it is left running), the job resumes from its checkpoint and finishes once,
   with one row per stage, subnet, front and file;
3. PostgreSQL is stopped mid-job: API calls answer 503 with a message at once (no hang), the
   dispatcher keeps retrying, and after the restart the job completes in the same attempt;
4. the artifact directory fills up, then turns read-only: each job fails with a reason that
   names the cause, the database stays consistent and the files written before stay intact.

Every process a test starts is ended by the test, by its own pid, session or environment tag
(never ``ray stop``, which would end every Ray on the host); the private PostgreSQL server and
the small tmpfs are torn down whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _jobs import wait_until
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import Artifact, Job, JobStage, ParetoFront, Subnet
from service.settings import Settings
from workers.spec import STAGE_ORDER

pytestmark = pytest.mark.slow

TOKEN = "faults-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOST = "host-cpu-torch"
SPACE = "bignas"
#: Environment variable that marks every process a service subprocess starts (its Ray too).
TAG = "NAS_FAULT_TEST_TAG"


def _spec(*, epochs: int = 1, num_samples: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        "name": "fault",
        "space": SPACE,
        "dataset": {"kind": "synthetic", "num_samples": num_samples, "resolution": 24},
        "training": {
            "epochs": epochs,
            "batch_size": 32,
            "sampler": "uniform",
            "warmup_epochs": 0,
            "bn_recalibration_batches": 2,
        },
        "search": {"population": 8, "generations": 4, "evaluations": 10},
        "finetune": None,  # these faults hit training and the service; not stage two
        "devices": [HOST],
        **extra,
    }


def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    data_root = tmp_path / "data"
    data_root.mkdir(exist_ok=True)
    values = {
        "database_url": database_url,
        "artifact_dir": tmp_path / "var",
        "data_root": data_root,
        "api_tokens": [TOKEN],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def host_tables(profiled_host_tables: Callable[..., Path]) -> Path:
    """The host device's latency table for the jobs' space, profiled once for the run and
    copied into each job's artifact directory (saves profiling per job)."""
    return profiled_host_tables(SPACE)


def _wait(what: str, check: Callable[[], Any], timeout: float = 300.0) -> Any:
    return wait_until(what, check, timeout)


Get = Callable[..., Any]


def _job(get: Get, job_id: int) -> dict[str, Any]:
    return get(f"/api/v1/jobs/{job_id}").json()


def _logs(get: Get, job_id: int) -> list[dict[str, Any]]:
    return get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1000}).json()["data"]


def _finished(get: Get, job_id: int) -> dict[str, Any] | None:
    job = _job(get, job_id)
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def _epochs(logs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Epoch -> its recorded data point (one per epoch: the key makes it unique)."""
    return {
        line["data"]["epoch"]: line
        for line in logs
        if line["kind"] == "metrics" and line["stage"] == "training" and "phase" in line["data"]
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_records(database_url: str, artifact_dir: Path, job_id: int) -> list[Artifact]:
    """The job's rows are consistent: no stage left running, one row per stage, subnet,
    front and file, and every recorded file on disk with the recorded size and sha256."""
    engine = create_db_engine(database_url)
    try:
        with create_session_factory(engine)() as session:
            job = session.get_one(Job, job_id)
            assert job.state in ("succeeded", "failed") and job.finished_at is not None
            assert job.claimed_by is None and job.heartbeat_at is None
            stages = session.scalars(select(JobStage).where(JobStage.job_id == job_id)).all()
            names = [stage.name for stage in stages]
            assert len(names) == len(set(names)) and set(names) <= set(STAGE_ORDER)
            assert all(stage.state != "running" for stage in stages)
            arch_ids = session.scalars(select(Subnet.arch_id).where(Subnet.job_id == job_id)).all()
            assert len(arch_ids) == len(set(arch_ids))
            devices = session.scalars(
                select(ParetoFront.device).where(ParetoFront.job_id == job_id)
            ).all()
            assert len(devices) == len(set(devices))
            artifacts = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
    finally:
        engine.dispose()
    assert len({a.path for a in artifacts}) == len(artifacts)
    for artifact in artifacts:
        path = artifact_dir / artifact.path
        assert path.is_file(), f"{artifact.path} is recorded but not on disk"
        assert path.stat().st_size == artifact.size_bytes, artifact.path
        assert _sha256(path) == artifact.sha256, f"{artifact.path} changed after it was recorded"
    return list(artifacts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- 1. a Ray Train worker killed mid-training -----------------------------------------------


def _registered_checkpoints(snapshot: Path) -> int:
    """Checkpoints Ray Train's controller has registered (the only ones a restart resumes
    from): it rewrites this snapshot at every registration."""
    try:
        return len(json.loads(snapshot.read_text())["checkpoint_results"])
    except (OSError, ValueError, KeyError):
        return 0


def _is_ray_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
    return False


def test_a_killed_training_worker_resumes_from_its_checkpoint_like_an_undisturbed_run(
    ray_local: Any, host_tables: Path, tmp_path: Path
) -> None:
    from nas.data import DatasetSpec
    from nas.training import TrainingConfig, load_checkpoint
    from workers.training import TrainJob, train_distributed

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    settings = _settings(url, tmp_path)
    shutil.copytree(host_tables, settings.artifact_dir / "tables")
    spec = _spec(epochs=3, num_samples=1200, num_workers=2)
    with TestClient(create_app(settings), headers=AUTH) as client:
        job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
        supernet = settings.artifact_dir / "jobs" / str(job_id) / "supernet"
        snapshot = supernet / "ray" / "supernet" / "checkpoint_manager_snapshot.json"
        _wait("the first checkpoint to be registered", lambda: _registered_checkpoints(snapshot))
        workers = {
            line["data"]["rank"]: line["data"]
            for line in _logs(client.get, job_id)
            if line["kind"] == "metrics" and line["data"].get("kind") == "worker"
        }
        victim = workers[0]["pid"]
        assert _job(client.get, job_id)["state"] == "training" and _is_ray_worker(victim)
        os.kill(victim, signal.SIGKILL)

        def trained() -> dict[str, Any] | None:
            job = _job(client.get, job_id)
            done = job["stages"] and job["stages"][0]["state"] != "running"
            return job if done or job["state"] in ("failed", "cancelled") else None

        job = _wait("the training stage to finish", trained)
        # what follows training is not what this test is about: cancelled, to save its time
        client.post(f"/api/v1/jobs/{job_id}/cancel")
        _wait("the job to stop", lambda: _finished(client.get, job_id))
        logs = _logs(client.get, job_id)
    messages = [line["message"] for line in logs]
    training = job["stages"][0]
    assert training["name"] == "training", job["stages"]
    assert training["state"] == "succeeded", (job["error"], messages)
    assert job["attempt"] == 1  # Ray Train recovered inside the attempt: nothing re-queued
    (restart,) = [line for line in logs if "training workers restarted" in line["message"]]
    assert restart["level"] == "warning" and "from the checkpoint of epoch" in restart["message"]
    restarted_pids = {
        line["data"]["pid"]
        for line in logs
        if line["kind"] == "metrics" and line["data"].get("kind") == "worker"
    }
    assert victim not in restarted_pids and len(restarted_pids) == 2
    epochs = _epochs(logs)
    assert sorted(epochs) == [1, 2, 3]

    reference_dir = tmp_path / "undisturbed"
    reference = train_distributed(
        TrainJob(
            space=SPACE,
            dataset=DatasetSpec.model_validate(spec["dataset"]),
            training=TrainingConfig.model_validate(spec["training"]),
            output_dir=reference_dir,
            num_workers=2,
        ),
        data_root=settings.data_root,
    )
    final = epochs[3]["data"]
    for key in ("max_val_acc", "min_val_acc", "lr"):
        assert final[key] == pytest.approx(reference[key], abs=1e-6), key
    for role, loss in reference["losses"].items():
        assert final["losses"][role] == pytest.approx(loss, abs=1e-6), role
    resumed, undisturbed = load_checkpoint(supernet), load_checkpoint(reference_dir)
    assert resumed["epoch"] == undisturbed["epoch"] == 3
    worst = max(
        float((resumed["model"][name].float() - tensor.float()).abs().max())
        for name, tensor in undisturbed["model"].items()
    )
    assert worst <= 1e-6, f"weights differ from the undisturbed run by up to {worst:g}"


# --- 2. the service process killed mid-job ---------------------------------------------------


def _tagged(tag: str) -> dict[int, str]:
    """Live processes (pid -> command line) whose environment carries ``TAG=tag``."""
    marker = f"{TAG}={tag}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


#: Ray's per-node agents: no job work runs in them, and they outlive a SIGKILLed raylet by
#: about a minute (they report its death to a GCS that died with it, then give up).
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _ray_work(tag: str) -> dict[int, str]:
    """Tagged processes that can run or hold job work: all but Ray's agents."""
    return {pid: cmd for pid, cmd in _tagged(tag).items() if not cmd.startswith(RAY_AGENTS)}


def _kill_tagged(tag: str) -> None:
    for pid in _tagged(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class ServiceProcess:
    """``python -m service`` with its own local Ray; every process it starts carries ``tag``."""

    process: subprocess.Popen[bytes]
    tag: str
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Starts service processes; whatever is left of them (and of their Ray) is killed after."""
    started: list[ServiceProcess] = []

    def start(**env_overrides: str) -> ServiceProcess:
        port, tag = _free_port(), uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if not k.startswith("NAS_")}
        env.update(
            NAS_DATABASE_URL=f"sqlite:///{tmp_path / 'nas.db'}",
            NAS_ARTIFACT_DIR=str(tmp_path / "var"),
            NAS_DATA_ROOT=str(tmp_path / "data"),
            NAS_API_TOKENS=json.dumps([TOKEN]),
            NAS_PORT=str(port),
            NAS_RAY_NUM_CPUS="2",
            RAY_USAGE_STATS_ENABLED="0",
            **{TAG: tag},
            **env_overrides,
        )
        log = tmp_path / f"service-{len(started) + 1}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=tmp_path,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = ServiceProcess(process, tag, f"http://127.0.0.1:{port}", log)
        started.append(service)
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{service.url}/health", timeout=2).status_code == 200:
                    return service
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not start:\n{service.output()}")
            time.sleep(0.3)

    (tmp_path / "data").mkdir(exist_ok=True)
    try:
        yield start
    finally:
        for service in started:
            if service.process.poll() is None:
                service.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.process.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
            _kill_tagged(service.tag)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(5)


def test_a_killed_service_restarts_and_finishes_the_job_once(
    services: Callable[..., ServiceProcess], host_tables: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    shutil.copytree(host_tables, tmp_path / "var" / "tables")
    first = services(NAS_JOB_LEASE_S="2")
    with httpx.Client(base_url=first.url, headers=AUTH, timeout=10) as client:
        submitted = client.post("/api/v1/jobs", json=_spec(epochs=3, num_samples=600))
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        _wait("an epoch to be recorded", lambda: _epochs(_logs(client.get, job_id)), timeout=180)
    assert len(_tagged(first.tag)) > 2  # the service and its Ray (GCS, raylet, workers)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    killed_at = time.monotonic()
    # A local Ray shares the fate of the process that started it: its GCS, raylet and every
    # worker (the job's actor included) end at once; its two agents give up on the dead GCS
    # within about a minute (checked at the end, while the second run goes on).
    _wait("the Ray work to end", lambda: not _ray_work(first.tag), timeout=15)

    second = services(NAS_JOB_LEASE_S="2")
    with httpx.Client(base_url=second.url, headers=AUTH, timeout=10) as client:
        job = _wait("the job to finish", lambda: _finished(client.get, job_id), timeout=240)
        logs = _logs(client.get, job_id)
        assert client.get("/api/v1/jobs").json()["count"] == 1
    messages = [line["message"] for line in logs]
    assert job["state"] == "succeeded", (job["error"], messages, second.output())
    assert job["attempt"] == 2 and job["progress"] == 100.0
    assert sum(m.startswith("succeeded in") for m in messages) == 1
    assert sum("queued again to resume from its last checkpoint" in m for m in messages) == 1
    assert messages.count("resuming training from the last checkpoint") == 1
    epochs = _epochs(logs)
    assert sorted(epochs) == [1, 2, 3]
    first_attempt = [e for e, line in epochs.items() if line["attempt"] == 1]
    resumed = [e for e, line in epochs.items() if line["attempt"] == 2]
    assert first_attempt and resumed and max(first_attempt) < min(resumed)  # no epoch twice
    assert [stage["state"] for stage in job["stages"]] == ["succeeded"] * len(STAGE_ORDER)
    artifacts = _check_records(url, tmp_path / "var", job_id)
    assert [a.kind for a in artifacts].count("supernet_checkpoint") == 1
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(JobStage)) == len(STAGE_ORDER)
            assert conn.scalar(select(func.count()).select_from(ParetoFront)) == 1
    finally:
        engine.dispose()
    while _tagged(first.tag) and time.monotonic() < killed_at + 90:
        time.sleep(1)
    left = _tagged(first.tag)
    _kill_tagged(first.tag)
    assert not left, f"processes of the killed service's Ray still ran 90 s later: {left}"


# --- 3. PostgreSQL restarted mid-job ---------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of this test's own (never the shared one on port 5432)."""

    bin_dir: Path
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self.bin_dir / "pg_ctl")]
        subprocess.run([*command, "-D", str(self.data_dir), *args], check=True, capture_output=True)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data_dir.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        self._pg_ctl(
            "-w", "-t", "60", "-l", str(self.data_dir.parent / "log"), "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")


def _postgres_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _postgres_bin()
    if bin_dir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL's server binaries and root (to run them as postgres)")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    base = Path(tempfile.mkdtemp(prefix="nas-pg-", dir="/tmp"))  # short: it holds the socket
    os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(bin_dir, base / "data", _free_port())
    try:
        subprocess.run(
            [
                "runuser", "-u", "postgres", "--", str(bin_dir / "initdb"),
                "-D", str(server.data_dir), "--auth=trust", "--username=postgres",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_a_postgres_restart_mid_job_is_a_quick_503_and_the_job_completes(
    ray_local: Any,
    host_tables: Path,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = private_postgres.url
    upgrade_database(url)
    settings = _settings(url, tmp_path)
    shutil.copytree(host_tables, settings.artifact_dir / "tables")
    spec = _spec(epochs=4, num_samples=600)
    caplog.set_level("WARNING", logger="service.dispatcher")
    with TestClient(create_app(settings), headers=AUTH) as client:
        job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
        _wait("an epoch to be recorded", lambda: _epochs(_logs(client.get, job_id)))
        private_postgres.stop()
        calls = [
            ("GET", f"/api/v1/jobs/{job_id}", None),
            ("GET", f"/api/v1/jobs/{job_id}/logs", None),
            ("GET", "/api/v1/jobs", None),
            ("POST", "/api/v1/jobs", spec),
        ]
        for method, path, body in calls:
            started = time.monotonic()
            response = client.request(method, path, json=body)
            took = time.monotonic() - started
            assert response.status_code == 503, (method, path, response.text)
            assert response.json()["detail"] == "database unavailable; try again shortly"
            assert response.headers["retry-after"] == "5"
            assert took < 3.0, f"{method} {path} took {took:.1f} s with the database down"
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"] == "unavailable"
        _wait(
            "the dispatcher to meet the outage",
            lambda: any("database unavailable" in r.getMessage() for r in caplog.records),
            timeout=30,
        )
        private_postgres.start()
        job = _wait("the job to finish", lambda: _finished(client.get, job_id))
        logs = _logs(client.get, job_id)
        assert client.get("/api/v1/jobs").json()["count"] == 1  # the 503 submission: not stored
        assert client.get("/health").status_code == 200
    assert job["state"] == "succeeded", (job["error"], [line["message"] for line in logs])
    assert job["attempt"] == 1  # the Ray work went on through the outage
    assert sorted(_epochs(logs)) == [1, 2, 3, 4]
    _check_records(url, settings.artifact_dir, job_id)


def test_a_database_server_that_never_answers_is_a_503_within_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that takes connections and never answers (hung, or half a network away) held
    each request for psycopg's default 130 s; the engine's connect timeout bounds it."""
    import service.db

    monkeypatch.setattr(service.db, "CONNECT_TIMEOUT_S", 2)  # psycopg's least
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads
        url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres"
        settings = _settings(url, tmp_path, dispatcher_enabled=False)
        with TestClient(create_app(settings), headers=AUTH) as client:
            started = time.monotonic()
            response = client.get("/api/v1/jobs")
            took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "database unavailable; try again shortly"
    assert took < 10, f"a request waited {took:.1f} s for a database that does not answer"


# --- 4. the artifact directory full, then read-only ------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs as the artifact directory: it fills up, and it can be made read-only
    (root ignores file permissions, not a read-only mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(directory: Path) -> None:
    """Write zeros until the filesystem has no block left."""
    with (directory / "filler").open("wb", buffering=0) as handle, pytest.raises(OSError) as full:
        while True:
            handle.write(b"\0" * (1 << 20))
    assert full.value.errno == errno.ENOSPC


def test_a_full_or_read_only_artifact_dir_fails_the_job_clearly_and_keeps_earlier_files(
    ray_local: Any, host_tables: Path, small_disk: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    settings = _settings(url, tmp_path, artifact_dir=small_disk)
    shutil.copytree(host_tables, small_disk / "tables")
    with TestClient(create_app(settings), headers=AUTH) as client:
        # full: the disk fills up once training is done; a later stage cannot write
        full_id = client.post("/api/v1/jobs", json=_spec()).json()["id"]

        def trained() -> bool:
            stages = _job(client.get, full_id)["stages"]
            return bool(stages) and stages[0]["state"] == "succeeded"

        _wait("training to finish", trained)
        _fill(small_disk)
        full = _wait("the job to fail", lambda: _finished(client.get, full_id))
        full_logs = _logs(client.get, full_id)
        assert full["state"] == "failed", full
        assert "No space left on device" in full["error"] and "is full" in full["error"]
        assert str(small_disk) in full["error"]
        failed = [stage for stage in full["stages"] if stage["state"] == "failed"]
        assert len(failed) == 1 and failed[0]["name"] != "training"
        assert full_logs[-1]["level"] == "error" and full["error"] in full_logs[-1]["message"]
        before = {a.path: a.sha256 for a in _check_records(url, small_disk, full_id)}
        assert f"jobs/{full_id}/supernet/latest.pt" in before

        # read-only: the next job cannot write at all
        (small_disk / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        read_only_id = client.post("/api/v1/jobs", json=_spec()).json()["id"]
        read_only = _wait("the job to fail", lambda: _finished(client.get, read_only_id))
        assert read_only["state"] == "failed", read_only
        assert "Read-only file system" in read_only["error"]
        assert "read-only" in read_only["error"] and str(small_disk) in read_only["error"]
    assert _check_records(url, small_disk, read_only_id) == []
    after = {a.path: a.sha256 for a in _check_records(url, small_disk, full_id)}
    assert after == before  # the first job's files: all there, unchanged
