"""Submitting, reading, cancelling and deleting jobs (what the job routes call)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import JSON, Dialect, Text, bindparam, cast, func, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.types import NullType

from nas.data import DataPathError, resolve_inside
from nas.hardware.device import BUILTIN_NAMES
from service.api.schemas.jobs import JobCreate, JobPublic
from service.db import UTCDateTime, utcnow
from service.errors import ConflictError, InvalidFieldError, NotFoundError
from service.models import TERMINAL_STATES, Device, Job, JobEvent, JobStage, LatencyTable
from service.settings import Settings
from service.store.documents import check_finite
from workers.health import HEALTH_KEY_PREFIX
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


# --- the job list as rows (what GET /jobs answers from, through service.api.caching) ---------

#: The columns of ``jobs`` a JobPublic shows, as the driver hands them over: decoding (JSON
#: text, SQLite's timestamps) waits until an answer is built, which a cached one never is.
_JOB_COLUMNS = (
    Job.id,
    Job.name,
    Job.owner,
    Job.space,
    Job.preset,
    Job.state,
    Job.stage,
    Job.progress,
    Job.error,
    Job.attempt,
    Job.cancel_requested_at,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
    Job.updated_at,
    Job.spec,
)
_STAGE_COLUMNS = (
    JobStage.name,
    JobStage.state,
    JobStage.progress,
    JobStage.started_at,
    JobStage.finished_at,
)


def _raw(column: Any) -> Any:
    """The column without its type's result processing where there is one: JSON as its text
    (on every backend), timestamps as the driver hands them over (SQLite: text)."""
    if isinstance(column.type, JSON):
        return cast(column, Text)
    if isinstance(column.type, UTCDateTime):
        return type_coerce(column, NullType())
    return column


def _list_statements(filtered: bool) -> tuple[Any, Any]:
    """The count and the page of ``list_jobs``, built once (``states``, ``limit``, ``offset``
    are bound per request). The page's ids come from an id-only scan (``ix_jobs_state_id``
    covers a state filter), so a filtered list sorts ids, not whole rows with their specs."""
    where = [Job.state.in_(bindparam("states", expanding=True))] if filtered else []
    count = select(func.count()).select_from(Job).where(*where)
    page = (
        select(Job.id)
        .where(*where)
        .order_by(Job.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    rows = (
        select(*map(_raw, _JOB_COLUMNS))
        .where(Job.id.in_(page.scalar_subquery()))
        .order_by(Job.id.desc())
    )
    return count, rows


_LIST = {filtered: _list_statements(filtered) for filtered in (False, True)}
_STAGES = (
    select(JobStage.job_id, *map(_raw, _STAGE_COLUMNS))
    .where(JobStage.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(JobStage.job_id, JobStage.position)
)


def _health_statement(sqlite: bool) -> Any:
    """The data of ``Job.health_events`` (the relationship's condition). On SQLite also as a
    range of keys: its LIKE ignores case, so no index serves it, and every data point of a job
    (a few per epoch) would be read to find its two health reports; under SQLite's binary
    collation the range is the same rows (keys are lower case). Not on PostgreSQL, where a
    locale's collation may sort '/' elsewhere."""
    where = [JobEvent.key.startswith(HEALTH_KEY_PREFIX, autoescape=True)]
    if sqlite:
        end = HEALTH_KEY_PREFIX[:-1] + chr(ord(HEALTH_KEY_PREFIX[-1]) + 1)
        where += [JobEvent.key >= HEALTH_KEY_PREFIX, JobEvent.key < end]
    return (
        select(JobEvent.job_id, _raw(JobEvent.data))
        .where(JobEvent.job_id.in_(bindparam("ids", expanding=True)), *where)
        .order_by(JobEvent.id)
    )


_HEALTH = {sqlite: _health_statement(sqlite) for sqlite in (False, True)}


@dataclass(frozen=True)
class JobRows:
    """One job as read: its row, its stages and its health data points, raw. A JobPublic is a
    function of these alone (``job_public_from_rows``), so they key a cache of answers."""

    job: tuple[Any, ...]
    stages: tuple[tuple[Any, ...], ...]
    health: tuple[str | None, ...]
    dialect: Dialect = field(compare=False, repr=False)


def list_job_rows(
    session: Session, *, states: Sequence[str], limit: int, offset: int
) -> tuple[list[JobRows], int]:
    """``list_jobs`` as rows: the same page in the same order, four queries whatever its size."""
    connection = session.connection()
    dialect = connection.dialect
    count, page = _LIST[bool(states)]
    params: dict[str, Any] = {"states": list(states)} if states else {}
    total = connection.execute(count, params).scalar() or 0
    rows = connection.execute(page, {**params, "limit": limit, "offset": offset}).all()
    if not rows:
        return [], total
    ids = {row[0]: i for i, row in enumerate(rows)}
    stages: list[list[tuple[Any, ...]]] = [[] for _ in rows]
    for job_id, *stage in connection.execute(_STAGES, {"ids": list(ids)}).all():
        stages[ids[job_id]].append(tuple(stage))
    health: list[list[str | None]] = [[] for _ in rows]
    for job_id, data in connection.execute(
        _HEALTH[dialect.name == "sqlite"], {"ids": list(ids)}
    ).all():
        health[ids[job_id]].append(data)
    return [
        JobRows(tuple(row), tuple(stages[i]), tuple(health[i]), dialect)
        for i, row in enumerate(rows)
    ], total


def _decoder(dialect: Dialect, column: Any) -> Callable[[Any], Any]:
    """What the column's type does to a value that ``_raw`` left raw."""
    if isinstance(column.type, JSON):
        return lambda text: None if text is None else json.loads(text)
    if isinstance(column.type, UTCDateTime):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            return process
    return lambda value: value


@functools.cache
def _decoders(dialect: Dialect) -> tuple[list[Callable[[Any], Any]], ...]:
    return (
        [_decoder(dialect, column) for column in _JOB_COLUMNS],
        [_decoder(dialect, column) for column in _STAGE_COLUMNS],
        [_decoder(dialect, JobEvent.data)],
    )


def job_public_from_rows(rows: JobRows) -> JobPublic:
    """What ``JobPublic.model_validate(job)`` gives for the ORM job these rows were read from
    (its health checks from the model's own ``Job.health`` and ``Job.warnings``)."""
    job_decode, stage_decode, (data_decode,) = _decoders(rows.dialect)
    view = SimpleNamespace(
        **{
            column.key: decode(value)
            for column, decode, value in zip(_JOB_COLUMNS, job_decode, rows.job, strict=True)
        }
    )
    view.cancel_requested = view.cancel_requested_at is not None
    view.stages = [
        SimpleNamespace(
            **{
                column.key: decode(value)
                for column, decode, value in zip(_STAGE_COLUMNS, stage_decode, stage, strict=True)
            }
        )
        for stage in rows.stages
    ]
    view.health_events = [SimpleNamespace(data=data_decode(data)) for data in rows.health]
    view.health = Job.health.fget(view)  # type: ignore[attr-defined]
    view.warnings = Job.warnings.fget(view)  # type: ignore[attr-defined]
    return JobPublic.model_validate(view)


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
