"""Artifact storage and worker placement: the pieces a multi-node deployment rests on
(tests/test_multinode.py runs them together on two Ray nodes); and database ids that are never
reused, on SQLite and PostgreSQL, in a fresh database and in one migrated from an old revision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, MetaData, Table, delete, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from service.db import Base, create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import (
    Artifact,
    Device,
    Job,
    JobEvent,
    JobStage,
    LatencyTable,
    ParetoFront,
    Subnet,
)
from workers.events import LogLine
from workers.jobs import EventLog, run_job, uses_ray_train
from workers.spec import JobRequest, SearchSettings, WorkerPlacement
from workers.storage import ArtifactStore, StoreNotSharedError
from workers.training import TrainJob, _scaling


def test_store_addresses_files_by_relative_path_and_refuses_escapes(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "var")
    with store.open("jobs/1/exports/a.onnx", "wb") as handle:
        handle.write(b"onnx")
    assert store.exists("jobs/1/exports/a.onnx") and not store.exists("jobs/1/none.onnx")
    assert store.read_bytes("jobs/1/exports/a.onnx") == b"onnx"
    assert store.relative(tmp_path / "var" / "jobs" / "1" / "exports" / "a.onnx") == (
        "jobs/1/exports/a.onnx"
    )
    for escape in ("../secret", "/etc/passwd", "jobs/../../x"):
        assert not store.exists(escape)
        with pytest.raises(ValueError, match="outside the artifact directory"):
            store.path(escape)
    with pytest.raises(ValueError, match="outside the artifact directory"):
        store.relative(tmp_path / "elsewhere")
    store.remove_tree("jobs/1")
    assert not (tmp_path / "var" / "jobs" / "1").exists()


def test_store_marker_tells_a_shared_directory_from_another(tmp_path: Path) -> None:
    shared = ArtifactStore(tmp_path / "shared")
    store_id = shared.ensure_marker()
    assert shared.ensure_marker() == store_id  # written once
    ArtifactStore(tmp_path / "shared").check_marker(store_id)  # another node, same mount
    with pytest.raises(StoreNotSharedError, match="same shared directory"):
        ArtifactStore(tmp_path / "node-local").check_marker(store_id)


def test_a_runner_that_does_not_see_the_store_fails_before_any_stage(tmp_path: Path) -> None:
    request = JobRequest(
        job_id=1,
        attempt=1,
        space="bignas",
        preset="tiny",
        dataset={"kind": "synthetic"},
        training={"epochs": 1},
        search=SearchSettings(),
        devices=["host-cpu-torch"],
        num_workers=2,
        artifact_dir=tmp_path / "node-local",
        data_root=tmp_path,
        store_id=ArtifactStore(tmp_path / "shared").ensure_marker(),
    )
    events = EventLog()
    outcome = run_job(request, events)
    assert outcome.state == "failed" and "NAS_ARTIFACT_DIR" in (outcome.error or "")
    assert all(isinstance(e, LogLine) for e in events.after(0))  # no stage started


def test_placement_goes_to_ray_train_as_asked() -> None:
    spread = WorkerPlacement(strategy="SPREAD", resources_per_worker={"node_b": 1})
    job = TrainJob(space="bignas", num_workers=2, placement=spread)
    assert _scaling(job, cluster_gpus=0) == {
        "num_workers": 2,
        "use_gpu": False,
        "resources_per_worker": {"CPU": 1.0, "node_b": 1},
        "placement_strategy": "SPREAD",
    }
    # GPUs: when asked for, when the cluster has one per worker, never when refused
    gpu = TrainJob(space="bignas", num_workers=2, placement={"resources_per_worker": {"GPU": 1}})
    assert _scaling(gpu, cluster_gpus=0)["use_gpu"] is True
    auto = TrainJob(space="bignas", num_workers=2)
    assert _scaling(auto, cluster_gpus=1)["use_gpu"] is False
    assert _scaling(auto, cluster_gpus=2)["resources_per_worker"] == {"CPU": 1.0, "GPU": 1.0}
    refused = gpu.model_copy(update={"use_gpu": False})
    assert _scaling(refused, cluster_gpus=8)["resources_per_worker"] == {"CPU": 1.0}


def test_one_worker_trains_on_ray_train_only_when_a_placement_asks_for_it() -> None:
    def request(**changes: object) -> JobRequest:
        values = {
            "job_id": 1,
            "attempt": 1,
            "space": "bignas",
            "preset": "tiny",
            "dataset": {"kind": "synthetic"},
            "training": {"epochs": 1},
            "search": {},
            "devices": ["host-cpu-torch"],
            "num_workers": 1,
            "artifact_dir": Path("/tmp/a"),
            "data_root": Path("/tmp/d"),
            **changes,
        }
        return JobRequest.model_validate(values)

    assert not uses_ray_train(request())
    assert uses_ray_train(request(num_workers=2))
    assert uses_ray_train(request(placement={"resources_per_worker": {"GPU": 1}}))


# Ids that a user sees (in URLs, bookmarks, the log cursor) are never handed out twice: after a
# delete, the next row gets a new id on SQLite (AUTOINCREMENT) and PostgreSQL (sequences).


def _rows_in_every_id_table(session: Session, n: int) -> dict[str, int]:
    """A job with a row in each table it owns, and a device with a latency table: their ids."""
    job = Job(name=f"j{n}", owner="local", space="bignas", preset="tiny", spec={})
    device = Device(
        name=f"d{n}",
        runtime="torch",
        accelerator="cpu",
        batch_size=1,
        threads=1,
        dtype="float32",
        owner="local",
    )
    session.add_all([job, device])
    session.flush()
    subnet = Subnet(job_id=job.id, arch_id="a", arch={}, resolution=32, macs=1, params=1)
    owned = [
        subnet,
        JobStage(job_id=job.id, name="training", position=0),
        JobEvent(job_id=job.id, kind="log", message="m"),
        ParetoFront(job_id=job.id, device="host-cpu-torch", objectives=["accuracy"]),
        LatencyTable(
            device_id=device.id,
            space="bignas",
            preset="tiny",
            revision=1,
            format_version=1,
            content={},
            sha256="0" * 64,
            size_bytes=2,
            owner="local",
        ),
    ]
    session.add_all(owned)
    session.flush()
    artifact = Artifact(
        job_id=job.id,
        subnet_id=subnet.id,
        kind="onnx",
        path=f"jobs/{job.id}/a.onnx",
        sha256="0" * 64,
        size_bytes=1,
    )
    session.add(artifact)
    session.commit()
    return {row.__tablename__: row.id for row in (job, device, *owned, artifact)}


def _has_id(table: Table) -> bool:
    return [column.name for column in table.primary_key] == ["id"]


def test_ids_are_not_reused_after_a_delete(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        issued = [_rows_in_every_id_table(session, n) for n in range(3)]
        # every table with an id is covered, so a new one cannot be forgotten
        assert set(issued[0]) == {t.name for t in Base.metadata.tables.values() if _has_id(t)}
        session.execute(delete(Job).where(Job.id == issued[-1]["jobs"]))
        session.execute(delete(Device).where(Device.id == issued[-1]["devices"]))
        session.commit()
        new = _rows_in_every_id_table(session, 3)
    reused = [t for t, new_id in new.items() if new_id <= max(ids[t] for ids in issued)]
    assert reused == []


#: The last revision whose SQLite tables could hand a deleted id out again.
REUSING_REVISION = "0002"


def _insert_old_rows(connection: Connection, n: int) -> int:
    """A job with a subnet, an artifact of it and a log line, as ``REUSING_REVISION`` stores
    them; the database picks the ids, as the service lets it."""
    tables = MetaData()
    tables.reflect(connection, only=("jobs", "subnets", "artifacts", "job_events"))
    jobs, subnets, artifacts, events = (
        tables.tables[name] for name in ("jobs", "subnets", "artifacts", "job_events")
    )
    now = datetime(2026, 1, n, tzinfo=UTC)
    job_id = connection.execute(
        insert(jobs).returning(jobs.c.id),
        {
            "name": f"j{n}",
            "owner": "local",
            "space": "bignas",
            "preset": "tiny",
            "spec": {"n": n},
            "state": "queued",
            "progress": 0.0,
            "attempt": 0,
            "event_seq": 1,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    subnet = {"job_id": job_id, "arch_id": "a", "arch": {}, "resolution": 32, "macs": 1}
    subnet_id = connection.execute(
        insert(subnets).returning(subnets.c.id), {**subnet, "params": 1, "created_at": now}
    ).scalar_one()
    artifact = {"job_id": job_id, "subnet_id": subnet_id, "kind": "onnx", "sha256": "0" * 64}
    connection.execute(
        insert(artifacts),
        {**artifact, "path": f"jobs/{job_id}/a.onnx", "size_bytes": 1, "created_at": now},
    )
    event = {"job_id": job_id, "attempt": 0, "level": "info", "kind": "log", "message": "m"}
    connection.execute(insert(events), {**event, "created_at": now})
    return job_id


def _snapshot(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = MetaData()
    tables.reflect(connection, only=("jobs", "subnets", "artifacts", "job_events"))
    return {
        name: [tuple(row) for row in connection.execute(select(table).order_by(table.c.id))]
        for name, table in tables.tables.items()
    }


def test_upgrading_an_old_database_keeps_its_rows_and_stops_reusing_ids(
    database_url: str,
) -> None:
    upgrade_database(database_url, REUSING_REVISION)
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            assert [_insert_old_rows(connection, n) for n in (1, 2, 3)] == [1, 2, 3]
            connection.execute(text("DELETE FROM jobs WHERE id = 3"))  # and what it owns
            before = _snapshot(connection)
        assert [row[0] for row in before["subnets"]] == [1, 2]
        upgrade_database(database_url)
        with engine.connect() as connection:
            after = _snapshot(connection)
        # later revisions add columns at the end, NULL for old rows; the old columns are intact
        assert all(before[t] for t in before)
        width = {t: len(rows[0]) for t, rows in before.items()}
        assert {t: [r[: width[t]] for r in rows] for t, rows in after.items()} == before
        assert all(v is None for t, rows in after.items() for r in rows for v in r[width[t] :])
        with create_session_factory(engine)() as session:
            new = _rows_in_every_id_table(session, 3)
            session.execute(delete(Job).where(Job.id == new["jobs"]))
            session.execute(delete(Device).where(Device.id == new["devices"]))
            session.commit()
            newer = _rows_in_every_id_table(session, 4)
    finally:
        engine.dispose()
    # Without AUTOINCREMENT, SQLite kept no record of job 3 once it was deleted: the upgrade
    # can only start above the ids still there. PostgreSQL's sequences remember it.
    highest_before = 3 if engine.dialect.name == "postgresql" else 2
    for table in ("jobs", "subnets", "artifacts", "job_events"):
        assert new[table] > highest_before, table
    assert [t for t, newer_id in newer.items() if newer_id <= new[t]] == []
