"""Submitting, reading, cancelling and deleting jobs (what the job routes call)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from nas.data import DataPathError, resolve_inside
from nas.hardware.device import BUILTIN_NAMES
from service.api.schemas.jobs import JobCreate
from service.db import utcnow
from service.errors import ConflictError, InvalidFieldError, NotFoundError
from service.models import TERMINAL_STATES, Device, Job, JobEvent, LatencyTable
from service.settings import Settings
from service.store.documents import check_finite
from workers.spec import job_dir
from workers.storage import ArtifactStore


def _check_devices(session: Session, body: JobCreate) -> None:
    """Every device is built in, or registered with a latency table for the job's space and
    preset (the search needs one to predict latencies on it)."""
    with_table = set(
        session.scalars(
            select(Device.name)
            .join(LatencyTable)
            .where(
                Device.name.in_(body.devices),
                LatencyTable.space == body.space,
                LatencyTable.preset == body.preset,
            )
        ).all()
    )
    for index, name in enumerate(body.devices):
        if name in BUILTIN_NAMES or name in with_table:
            continue
        loc = ("body", "devices", index)
        if session.scalar(select(Device.id).where(Device.name == name)) is not None:
            raise InvalidFieldError(
                loc,
                f"device {name!r} has no latency table for space {body.space!r} preset "
                f"{body.preset!r}; upload one (POST /api/v1/devices/{name}/latency-tables)",
            )
        known = sorted({*BUILTIN_NAMES, *session.scalars(select(Device.name)).all()})
        raise InvalidFieldError(
            loc,
            f"unknown device {name!r}; allowed values: {known} (register one with "
            "POST /api/v1/devices)",
        )


def _check_dataset_root(body: JobCreate, settings: Settings) -> None:
    if body.dataset.root is None:
        return
    try:
        resolve_inside(settings.data_root, body.dataset.root, field="dataset.root")
    except DataPathError as exc:
        raise InvalidFieldError(("body", "dataset", "root"), str(exc)) from None


def create_job(
    session: Session,
    settings: Settings,
    body: JobCreate,
    *,
    owner: str,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Store a validated spec as a queued job; ``(job, created)``.

    With an ``idempotency_key``, a retried submission returns the job the first one created
    (``created`` False) instead of queueing the same work twice.
    """
    check_finite(body.model_dump(), ("body",))
    spec = body.model_dump(mode="json")
    _check_devices(session, body)
    _check_dataset_root(body, settings)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner, idempotency_key, spec)
        if existing is not None:
            return existing, False
    job = Job(
        name=body.name,
        owner=owner,
        idempotency_key=idempotency_key,
        space=body.space,
        preset=body.preset,
        spec=spec,
        state="queued",
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the insert; answer with its job.
        session.rollback()
        existing = _by_idempotency_key(session, owner, idempotency_key or "", spec)
        if existing is None:
            raise
        return existing, False
    session.add(JobEvent(job_id=job.id, kind="state", message=f"job submitted by {owner}"))
    session.commit()
    return get_job(session, job.id), True


def _by_idempotency_key(
    session: Session, owner: str, key: str, spec: dict[str, object]
) -> Job | None:
    job = session.scalars(
        select(Job)
        .options(selectinload(Job.stages), selectinload(Job.health_events))
        .where(Job.owner == owner, Job.idempotency_key == key)
    ).one_or_none()
    if job is not None and job.spec != spec:
        raise ConflictError(
            f"Idempotency-Key {key!r} was used for job {job.id} with a different spec; "
            "use a new key for a new job"
        )
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.scalars(
        select(Job)
        .options(selectinload(Job.stages), selectinload(Job.health_events))
        .where(Job.id == job_id)
    ).one_or_none()
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def list_jobs(
    session: Session, *, states: Sequence[str], limit: int, offset: int
) -> tuple[list[Job], int]:
    """Newest first; ``states`` empty means every state. Returns the page and the total."""
    where = [Job.state.in_(list(states))] if states else []
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    page = session.scalars(
        select(Job)
        .options(selectinload(Job.stages), selectinload(Job.health_events))
        .where(*where)
        .order_by(Job.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(page), total


def cancel_job(session: Session, job_id: int) -> Job:
    """A queued job is cancelled at once; a running one is marked, and the dispatcher that
    owns it stops its Ray work and records the cancellation (within seconds)."""
    while True:  # each pass either changes the row or sees a state that needs no change
        job = get_job(session, job_id)
        if job.state == "cancelled" or job.cancel_requested_at is not None:
            return job
        if job.state in TERMINAL_STATES:
            raise ConflictError(
                f"job {job_id} already {job.state}; only queued or running jobs can be cancelled"
            )
        now = utcnow()
        queued = job.state == "queued"
        changed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == job.state, Job.cancel_requested_at.is_(None))
            .values(
                cancel_requested_at=now,
                **({"state": "cancelled", "finished_at": now} if queued else {}),
            )
        ).rowcount
        if changed:
            message = "cancelled while queued" if queued else "cancel requested; stopping Ray work"
            session.add(JobEvent(job_id=job_id, attempt=job.attempt, kind="state", message=message))
            session.commit()
            return get_job(session, job_id)
        session.rollback()
        session.expire_all()


def delete_job(session: Session, settings: Settings, job_id: int) -> None:
    """Delete a finished job, its rows (cascade) and its files under NAS_ARTIFACT_DIR."""
    job = get_job(session, job_id)
    deleted = session.execute(
        Job.__table__.delete().where(Job.id == job_id, Job.state.in_(TERMINAL_STATES))
    ).rowcount
    if not deleted:
        session.rollback()
        raise ConflictError(
            f"job {job_id} is {job.state}; only finished jobs (succeeded, failed, cancelled) "
            "can be deleted; cancel it first"
        )
    session.commit()
    store = ArtifactStore(settings.artifact_dir)
    store.remove_tree(store.relative(job_dir(store.root, job_id)))


def list_events(session: Session, job_id: int, *, after: int, limit: int) -> list[JobEvent]:
    """The job's log in order, from the line after ``after`` (a cursor: the last id read)."""
    get_job(session, job_id)
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after)
            .order_by(JobEvent.id)
            .limit(limit)
        ).all()
    )
