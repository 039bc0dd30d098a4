"""Running jobs: atomic claims and leases (SQLite and PostgreSQL), recording what runners
report, and real jobs on a local Ray: success through the API, cancel, controller restarts."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _jobs import wait_until
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.api.schemas.jobs import JobCreate
from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import Artifact, Job, JobEvent, JobStage, ParetoFront, Subnet
from service.settings import Settings
from service.store import jobs, leases
from service.store.progress import record_events
from workers.events import ArtifactWritten, Metrics, StageFinished, StageProgress, StageStarted
from workers.jobs import RAY_NAMESPACE, STAGES
from workers.spec import STAGE_ORDER

SPEC: dict[str, Any] = {
    "name": "tiny bignas",
    "space": "bignas",
    "dataset": {"kind": "synthetic", "num_samples": 200, "resolution": 24},
    "training": {
        "epochs": 1,
        "batch_size": 32,
        "sampler": "uniform",
        "warmup_epochs": 0,
        "bn_recalibration_batches": 2,
    },
    "search": {"population": 8, "generations": 4, "evaluations": 10},
    "finetune": {"subnets": 1, "samples": 1, "max_epochs": 1},
    "devices": ["host-cpu-torch"],
}


def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    data_root = tmp_path / "data"
    data_root.mkdir(exist_ok=True)
    values = {
        "database_url": database_url,
        "artifact_dir": tmp_path / "var",
        "data_root": data_root,
        "dispatcher_enabled": False,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def host_tables(profiled_host_tables: Callable[..., Path]) -> Path:
    """The host device's latency table for the jobs' space, profiled once for the run."""
    return profiled_host_tables(SPEC["space"])


@pytest.fixture(autouse=True)
def _profiled_once(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Jobs on Ray find the host table in their artifact directory instead of profiling it
    again (``_settings`` puts the artifact directory at ``tmp_path / "var"``)."""
    if "ray_local" in request.fixturenames:
        shutil.copytree(request.getfixturevalue("host_tables"), tmp_path / "var" / "tables")


def _queue(sessions: sessionmaker[Session], settings: Settings, count: int) -> list[int]:
    ids = []
    for i in range(count):
        with sessions() as session:
            job, _ = jobs.create_job(
                session, settings, JobCreate(**{**SPEC, "name": f"j{i}"}), owner="local"
            )
            ids.append(job.id)
    return ids


# --- claims and leases, without Ray ----------------------------------------------------------


def test_concurrent_dispatchers_never_claim_the_same_job(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    queued = _queue(sessions, _settings(database_url, tmp_path), 24)
    claims: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def dispatcher(name: str) -> None:
        engine = create_db_engine(database_url)  # its own pool, as another process would have
        factory = create_session_factory(engine)
        mine = claims.setdefault(name, [])
        start.wait()
        while True:
            with factory() as session:
                owned = leases.claim_next(session, name, first_stage="training")
            if owned is None:
                break
            mine.append(owned.id)
        engine.dispose()

    threads = [threading.Thread(target=dispatcher, args=(f"d{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [job_id for ids in claims.values() for job_id in ids]
    assert sorted(claimed) == queued  # every job once, none twice
    with sessions() as session:
        rows = session.scalars(select(Job)).all()
    assert {job.state for job in rows} == {"training"}
    assert all(job.attempt == 1 and job.started_at is not None for job in rows)
    assert {job.id: job.claimed_by for job in rows} == {
        job_id: name for name, ids in claims.items() for job_id in ids
    }


def test_a_released_or_expired_lease_is_taken_over_by_exactly_one(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (job_id,) = _queue(sessions, _settings(database_url, tmp_path), 1)
    with sessions() as session:
        assert leases.claim_next(session, "a", first_stage="training") is not None
    with sessions() as session:
        assert leases.orphans(session, lease_s=60) == []
        assert leases.take_over(session, job_id, "b", lease_s=60) is None  # a's lease is fresh
    time.sleep(1.1)
    with sessions() as session:
        assert leases.orphans(session, lease_s=1) == [job_id]  # a stopped sending heartbeats
    winners: list[str] = []
    start = threading.Barrier(4)

    def take_over(name: str) -> None:
        start.wait()
        with sessions() as session:
            if leases.take_over(session, job_id, name, lease_s=1) is not None:
                winners.append(name)

    threads = [threading.Thread(target=take_over, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with sessions() as session:
        leases.release(session, winners[0], [job_id])
        assert leases.orphans(session, lease_s=60) == [job_id]
        owned = leases.take_over(session, job_id, "d", lease_s=60)
    assert owned is not None and owned.attempt == 1


def _at() -> datetime:
    return datetime.now(UTC)


def test_reported_events_are_recorded_once(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (job_id,) = _queue(sessions, _settings(database_url, tmp_path), 1)
    with sessions() as session:
        owned = leases.claim_next(session, "a", first_stage="training")
    assert owned is not None
    epoch = {"epoch": 1, "max_val_acc": 50.0}
    events = [
        StageStarted(seq=1, at=_at(), stage="training"),
        StageProgress(seq=2, at=_at(), stage="training", fraction=0.5, percent=50.0),
        Metrics(
            seq=3, at=_at(), stage="training", key="training/epoch/1", message="e1", data=epoch
        ),
        ArtifactWritten(
            seq=4,
            at=_at(),
            stage="training",
            kind="supernet_checkpoint",
            path=f"jobs/{job_id}/supernet/latest.pt",
            sha256="0" * 64,
            size_bytes=10,
        ),
    ]
    with sessions() as session:
        assert record_events(session, job_id, "a", 1, events) == 4
    with sessions() as session:  # delivered again (a repeated poll): nothing new
        assert record_events(session, job_id, "a", 1, events) == 4
    with sessions() as session:  # not b's job: nothing written
        assert (
            record_events(
                session, job_id, "b", 1, [StageFinished(seq=5, at=_at(), stage="training")]
            )
            is None
        )
    finished = [StageFinished(seq=5, at=_at(), stage="training")]
    with sessions() as session:
        assert record_events(session, job_id, "a", 1, finished) == 5
        assert leases.finish(session, job_id, "a", 1, succeeded=True)
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert (job.state, job.progress, job.claimed_by) == ("succeeded", 100.0, None)
        (stage,) = job.stages
        assert (stage.name, stage.state, stage.progress) == ("training", "succeeded", 100.0)
        assert stage.started_at <= stage.finished_at  # type: ignore[operator]
        assert session.scalar(select(func.count()).select_from(Artifact)) == 1
        kinds = session.scalars(select(JobEvent.kind).order_by(JobEvent.id)).all()
    assert kinds == ["state", "state", "stage", "metrics", "artifact", "stage", "state"]


def test_an_interrupted_job_is_queued_again_until_it_runs_out_of_attempts(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (job_id,) = _queue(sessions, _settings(database_url, tmp_path), 1)
    for attempt in (1, 2):
        with sessions() as session:
            owned = leases.claim_next(session, "a", first_stage="training")
            assert owned is not None and owned.attempt == attempt
            record_events(
                session, job_id, "a", attempt, [StageStarted(seq=1, at=_at(), stage="training")]
            )
        with sessions() as session:
            state = leases.interrupted(session, job_id, "a", reason="worker lost", max_attempts=2)
        assert state == ("queued" if attempt == 1 else "failed")
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert job.error is not None and "gave up after 2 attempts" in job.error
        assert [s.state for s in job.stages] == ["failed"]


def test_the_runner_stages_follow_the_job_lifecycle() -> None:
    names = [stage.name for stage in STAGES]
    assert names == [name for name in STAGE_ORDER if name in names]
    assert names[0] == "training" and all(stage.weight > 0 for stage in STAGES)


# --- real jobs on a local Ray ----------------------------------------------------------------


def _wait(what: str, check: Callable[[], Any], timeout: float = 400.0) -> Any:
    return wait_until(what, check, timeout)


def _job(client: TestClient, job_id: int) -> dict[str, Any]:
    return client.get(f"/api/v1/jobs/{job_id}").json()


def _logs(client: TestClient, job_id: int) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1000}).json()["data"]


def _epochs(client: TestClient, job_id: int) -> dict[int, int]:
    """Epoch -> attempt of its recorded data point."""
    return {
        line["data"]["epoch"]: line["attempt"]
        for line in _logs(client, job_id)
        if line["kind"] == "metrics" and (line["data"] or {}).get("kind") == "epoch"
    }


def _finished(client: TestClient, job_id: int) -> dict[str, Any] | None:
    job = _job(client, job_id)
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def _actor_gone(ray: Any, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        return True
    return False


def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited, not yet reaped


# SQLite only: tests/test_multinode.py runs a whole job through the dispatcher on PostgreSQL,
# and tests/test_job_stages.py stores a finished job's results (stage two's included) in both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_tiny_job_runs_to_success_through_the_api(
    ray_local: Any, database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    settings = _settings(database_url, tmp_path, dispatcher_enabled=True)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
        job = _wait("the job to finish", lambda: _finished(client, job_id))
        logs = _logs(client, job_id)
    assert job["state"] == "succeeded", job["error"]
    assert job["progress"] == 100.0 and job["attempt"] == 1 and job["error"] is None
    assert [stage["name"] for stage in job["stages"]] == list(STAGE_ORDER)
    assert {stage["state"] for stage in job["stages"]} == {"succeeded"}
    stage = job["stages"][0]
    assert job["started_at"] <= stage["started_at"] <= stage["finished_at"] <= job["finished_at"]
    (epoch,) = [
        line for line in logs if line["kind"] == "metrics" and line["data"].get("kind") == "epoch"
    ]
    assert epoch["data"]["epoch"] == 1 and 0 <= epoch["data"]["max_val_acc"] <= 100
    (artifact,) = [
        line for line in logs if line["kind"] == "artifact" and line["stage"] == "training"
    ]
    checkpoint = settings.artifact_dir / artifact["data"]["path"]
    assert checkpoint == settings.artifact_dir / "jobs" / str(job_id) / "supernet" / "latest.pt"
    assert checkpoint.stat().st_size == artifact["data"]["size_bytes"]
    engine = create_db_engine(database_url)
    with create_session_factory(engine)() as session:
        row = session.scalars(select(Artifact).where(Artifact.kind == "supernet_checkpoint")).one()
        # the searching stage's results were stored, and the exports linked to their subnet
        front = session.scalars(select(ParetoFront)).one()
        assert front.device == "host-cpu-torch" and session.scalar(select(func.count(Subnet.id)))
        exports = session.scalars(select(Artifact).where(Artifact.kind == "onnx")).all()
        assert exports and all(a.subnet_id is not None for a in exports)
    engine.dispose()
    assert row.kind == "supernet_checkpoint" and row.path == artifact["data"]["path"]
    import hashlib

    assert row.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert _actor_gone(ray_local, leases.actor_name(job_id, 1))  # cleaned up after success


def test_a_stage_that_fails_fails_the_job_with_its_reason(ray_local: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    settings = _settings(url, tmp_path, dispatcher_enabled=True)
    # passes the submit-time checks (two class folders of .png files), but no file decodes;
    # enough of them for a batch, since files are decoded as batches are read
    for label in ("a", "b"):
        (settings.data_root / "broken" / label).mkdir(parents=True)
        for i in range(30):
            (settings.data_root / "broken" / label / f"{i}.png").write_text("not an image")
    spec = {**SPEC, "dataset": {"kind": "imagefolder", "root": "broken"}}
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
        job = _wait("the job to finish", lambda: _finished(client, job_id))
        logs = _logs(client, job_id)
    assert job["state"] == "failed" and job["attempt"] == 1  # a bad input is not retried
    assert "cannot identify image file" in job["error"], job["error"]
    assert job["stages"][0]["state"] == "failed" and job["finished_at"] is not None
    assert logs[-1]["level"] == "error" and "failed in stage training" in logs[-1]["message"]


def test_cancel_stops_the_ray_work_within_10_seconds(ray_local: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    settings = _settings(url, tmp_path, dispatcher_enabled=True)
    long = {**SPEC, "training": {**SPEC["training"], "epochs": 200}}
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/api/v1/jobs", json=long).json()["id"]
        _wait("training to start", lambda: _job(client, job_id)["stages"])
        name = leases.actor_name(job_id, 1)
        where = ray_local.get(ray_local.get_actor(name, namespace=RAY_NAMESPACE).start.remote())
        assert not _process_gone(where["pid"])
        asked = time.monotonic()
        response = client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202 and response.json()["cancel_requested"] is True
        _wait("the actor to go", lambda: _actor_gone(ray_local, name), timeout=10)
        _wait("its process to exit", lambda: _process_gone(where["pid"]), timeout=10)
        job = _wait("the job to be cancelled", lambda: _finished(client, job_id), timeout=10)
        took = time.monotonic() - asked
        logs = _logs(client, job_id)
    assert took < 10
    assert job["state"] == "cancelled" and job["stages"][0]["state"] == "cancelled"
    assert job["progress"] < 100 and job["finished_at"] is not None
    assert logs[-1]["message"] == "cancelled; Ray work stopped"


def _restart_mid_job(
    tmp_path: Path, epochs: int, wait_epochs: int, between: Callable[[int], None]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, int], Settings]:
    """Run a job; stop the controller once ``wait_epochs`` epochs were recorded; call
    ``between(job_id)``; start a new controller and let it finish the job."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    settings = _settings(url, tmp_path, dispatcher_enabled=True)
    spec = {**SPEC, "training": {**SPEC["training"], "epochs": epochs}}
    with TestClient(create_app(settings)) as first:
        job_id = first.post("/api/v1/jobs", json=spec).json()["id"]
        _wait("epochs to be recorded", lambda: len(_epochs(first, job_id)) >= wait_epochs)
    engine = create_db_engine(url)
    with create_session_factory(engine)() as session:
        job = session.get_one(Job, job_id)
        assert job.state == "training" and job.claimed_by is None  # handed back
    engine.dispose()
    between(job_id)
    with TestClient(create_app(settings)) as second:
        job = _wait("the job to finish", lambda: _finished(second, job_id))
        logs = _logs(second, job_id)
        epochs_recorded = _epochs(second, job_id)
        assert second.get("/api/v1/jobs").json()["count"] == 1
    engine = create_db_engine(url)
    with create_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(JobStage)) == len(STAGE_ORDER)
        checkpoints = select(Artifact).where(Artifact.kind == "supernet_checkpoint")
        assert len(session.scalars(checkpoints).all()) == 1
    engine.dispose()
    return job, logs, epochs_recorded, settings


def test_a_restarted_controller_keeps_watching_work_that_still_runs(
    ray_local: Any, tmp_path: Path
) -> None:
    """The Ray cluster outlives the controller: the new one adopts the running actor."""
    job, logs, epochs, _ = _restart_mid_job(
        tmp_path, epochs=4, wait_epochs=1, between=lambda _: None
    )
    assert job["state"] == "succeeded", job["error"]
    assert job["attempt"] == 1  # not restarted: the same work went on
    assert epochs == {1: 1, 2: 1, 3: 1, 4: 1}  # each epoch once, none lost
    messages = [line["message"] for line in logs]
    assert sum("took the job over" in m for m in messages) == 1
    assert messages.count("stage training started") == 1
    assert "controller stopped; the next controller takes the job over" in messages


def test_a_restarted_controller_resumes_lost_work_from_its_checkpoint(
    ray_local: Any, tmp_path: Path
) -> None:
    """The Ray work is gone (as when the local Ray stops with its controller): the job is
    queued again and its training resumes from the last epoch checkpoint."""

    def lose_the_work(job_id: int) -> None:
        ray_local.kill(ray_local.get_actor(leases.actor_name(job_id, 1), namespace=RAY_NAMESPACE))

    job, logs, epochs, settings = _restart_mid_job(
        tmp_path, epochs=4, wait_epochs=2, between=lose_the_work
    )
    assert job["state"] == "succeeded", job["error"]
    assert job["attempt"] == 2
    assert sorted(epochs) == [1, 2, 3, 4]  # each epoch once, none lost
    first = [epoch for epoch, attempt in epochs.items() if attempt == 1]
    resumed = [epoch for epoch, attempt in epochs.items() if attempt == 2]
    assert first and resumed and max(first) < min(resumed)  # not trained from scratch again
    messages = [line["message"] for line in logs]
    assert any("queued again to resume from its last checkpoint" in m for m in messages)
    assert "resuming training from the last checkpoint" in messages
    assert messages.count("stage training started") == 1
    assert messages.count("stage training resumed") == 1
    from nas.training import load_checkpoint

    checkpoint = settings.artifact_dir / "jobs" / str(job["id"]) / "supernet"
    assert load_checkpoint(checkpoint)["epoch"] == 4
