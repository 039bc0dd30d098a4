"""The database: migrations equal the models, and constraints refuse duplicates and nonsense
(on SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import Base, create_db_engine, create_session_factory, utcnow
from service.migrate import upgrade_database
from service.models import (
    JOB_STATES,
    Artifact,
    Device,
    Job,
    JobEvent,
    JobStage,
    LatencyTable,
    ParetoFront,
    ParetoMember,
    Subnet,
    SubnetLatency,
)
from workers.spec import STAGE_ORDER


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade_database(database_url)
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with create_session_factory(engine)() as session:
        yield session


def _job(session: Session, **values: object) -> Job:
    fields: dict[str, object] = {"name": "j", "owner": "local", "space": "bignas"}
    job = Job(**{**fields, "preset": "tiny", "spec": {}, **values})
    session.add(job)
    session.commit()
    return job


def _refused(session: Session, *rows: object) -> None:
    session.add_all(rows)
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_migrations_and_models_do_not_drift(engine: Engine) -> None:
    """`alembic upgrade head`, then autogenerate finds nothing to add, drop or alter."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_job_states_follow_the_stage_order() -> None:
    assert ("queued", *STAGE_ORDER, "succeeded", "failed", "cancelled") == JOB_STATES


def test_duplicates_are_impossible(session: Session) -> None:
    job = _job(session)
    session.add(JobStage(job_id=job.id, name="training", position=0))
    subnet = Subnet(job_id=job.id, arch_id="a1", arch={}, resolution=32, macs=1, params=1)
    session.add(subnet)
    session.add(ParetoFront(job_id=job.id, device="host-cpu-torch", objectives=["accuracy"]))
    session.add(
        Artifact(job_id=job.id, kind="onnx", path="jobs/1/a.onnx", sha256="0" * 64, size_bytes=1)
    )
    session.add(JobEvent(job_id=job.id, kind="metrics", message="m", key="training/epoch/1"))
    session.commit()
    _refused(session, JobStage(job_id=job.id, name="training", position=0))
    _refused(session, Subnet(job_id=job.id, arch_id="a1", arch={}, resolution=32, macs=1, params=1))
    _refused(session, ParetoFront(job_id=job.id, device="host-cpu-torch", objectives=[]))
    _refused(
        session,
        Artifact(job_id=job.id, kind="onnx", path="jobs/1/a.onnx", sha256="1" * 64, size_bytes=1),
    )
    _refused(session, JobEvent(job_id=job.id, kind="metrics", message="m", key="training/epoch/1"))
    _refused(
        session,
        SubnetLatency(subnet_id=subnet.id, device="d"),
        SubnetLatency(subnet_id=subnet.id, device="d"),
    )
    _job(session, owner="token:a", idempotency_key="k")
    _refused(
        session, Job(name="j", owner="token:a", idempotency_key="k", space="s", preset="p", spec={})
    )
    device = Device(
        name="pi4",
        runtime="onnxruntime",
        accelerator="cpu",
        batch_size=1,
        threads=4,
        dtype="float32",
        owner="local",
    )
    session.add(device)
    session.commit()
    table = {
        "space": "bignas",
        "preset": "tiny",
        "format_version": 1,
        "content": {},
        "size_bytes": 2,
        "owner": "local",
    }
    session.add(LatencyTable(device_id=device.id, revision=1, sha256="a" * 64, **table))
    session.commit()
    _refused(session, LatencyTable(device_id=device.id, revision=1, sha256="b" * 64, **table))
    _refused(session, LatencyTable(device_id=device.id, revision=2, sha256="a" * 64, **table))
    _refused(
        session,
        Device(
            name="pi4",
            runtime="torch",
            accelerator="cpu",
            batch_size=1,
            threads=1,
            dtype="float32",
            owner="x",
        ),
    )


@pytest.mark.parametrize(
    "values",
    [
        {"state": "paused"},
        {"progress": 101.0},
        {"state": "succeeded"},  # a finished job needs finished_at
        {"state": "training", "finished_at": datetime(2026, 1, 1, tzinfo=UTC)},
    ],
)
def test_job_checks(session: Session, values: dict[str, object]) -> None:
    _refused(session, Job(name="j", owner="o", space="s", preset="p", spec={}, **values))


def test_result_checks(session: Session) -> None:
    job = _job(session)
    _refused(session, JobStage(job_id=job.id, name="warming_up", position=0))
    _refused(session, Subnet(job_id=job.id, arch_id="x", arch={}, resolution=32, macs=-1, params=1))
    _refused(
        session,
        Subnet(
            job_id=job.id,
            arch_id="y",
            arch={},
            resolution=32,
            macs=1,
            params=1,
            measured_accuracy=120.0,
        ),
    )
    _refused(
        session,
        Device(
            name="x",
            runtime="tflite",
            accelerator="cpu",
            batch_size=1,
            threads=1,
            dtype="float32",
            owner="o",
        ),
    )


def test_deleting_a_job_deletes_everything_it_produced(session: Session) -> None:
    job = _job(session)
    subnet = Subnet(job_id=job.id, arch_id="a", arch={"d": [2]}, resolution=32, macs=10, params=5)
    session.add_all([subnet, JobStage(job_id=job.id, name="training", position=0)])
    session.add(JobEvent(job_id=job.id, kind="log", message="hello"))
    session.flush()
    front = ParetoFront(
        job_id=job.id, device="host-cpu-torch", objectives=["accuracy", "latency_ms"]
    )
    session.add_all(
        [front, SubnetLatency(subnet_id=subnet.id, device="host-cpu-torch", predicted_ms=1.5)]
    )
    session.flush()
    session.add(ParetoMember(front_id=front.id, subnet_id=subnet.id, position=0))
    session.add(
        Artifact(
            job_id=job.id,
            subnet_id=subnet.id,
            kind="onnx",
            path="jobs/x.onnx",
            sha256="0" * 64,
            size_bytes=3,
        )
    )
    session.commit()
    session.delete(job)
    session.commit()
    for table in (JobStage, JobEvent, Subnet, SubnetLatency, ParetoFront, ParetoMember, Artifact):
        assert session.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__


def test_timestamps_come_back_as_utc(session: Session) -> None:
    local = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    job = _job(session, started_at=local)
    session.expire_all()
    stored = session.get_one(Job, job.id)
    assert stored.started_at == local and stored.started_at.tzinfo == UTC
    assert abs(stored.created_at - utcnow()) < timedelta(minutes=1)
