"""Jobs: submit, list, read, cancel, delete, and read the log."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from nas.data import DataPathError, check_dataset_files
from nas.data.spec import OPTIONAL_ROOT_KINDS
from service.api import caching
from service.api.auth import WriteAccess
from service.api.deps import (
    MAX_ID,
    DispatcherDep,
    JobId,
    Limit,
    Offset,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from service.api.large_bodies import OffLoopJSONRoute
from service.api.schemas.common import (
    COMMON_RESPONSES,
    FORBIDDEN,
    ErrorPublic,
    ValidationErrorPublic,
)
from service.api.schemas.jobs import (
    SUBMIT_CHECKS,
    JobCreate,
    JobEventPublic,
    JobLogsPublic,
    JobPublic,
    JobsPublic,
)
from service.errors import InvalidFieldError
from service.models import JobState
from service.settings import Settings
from service.store import jobs as store

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    responses=COMMON_RESPONSES,
    route_class=OffLoopJSONRoute,  # large bodies parsed off the event loop
)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such job."}}
_JOB_JSON = TypeAdapter(JobPublic)
_CONFLICT = {409: {"model": ErrorPublic, "description": "Not allowed in the job's state."}}

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying a submission with the same key returns the first job instead "
        "of queueing another.",
    ),
]


def _check_dataset_files(body: JobCreate, settings: Settings) -> None:
    """Refuse a dataset folder the job could not read (unresolvable, empty, another layout)
    now, with a 422 on ``dataset.root``, rather than at the job's first epoch. A kind read
    from an installed package without a root (``fashion_mnist``) is checked too: a 422 on
    ``dataset.kind`` naming the ``apt-get install`` command when the package is missing."""
    packaged = body.dataset.root is None and body.dataset.kind in OPTIONAL_ROOT_KINDS
    if body.dataset.root is None and not packaged:
        return
    try:
        check_dataset_files(body.dataset, settings.data_root, field="dataset.root")
    except DataPathError as exc:
        field = "kind" if packaged else "root"
        raise InvalidFieldError(("body", "dataset", field), str(exc)) from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        200: {"model": JobPublic, "description": "Replayed: the key's job."},
        **_CONFLICT,
        422: {
            "model": ValidationErrorPublic,
            "description": f"The fields at fault; beyond the schema, checked here: "
            f"{SUBMIT_CHECKS}.",
        },
    },
)
def submit_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    principal: WriteAccess,
    dispatcher: DispatcherDep,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Queue a search job; the Location header names the new job."""
    _check_dataset_files(body, settings)
    job, created = store.create_job(
        session, settings, body, owner=principal.owner, idempotency_key=idempotency_key
    )
    response.headers["Location"] = str(request.url_for("read_job", job_id=job.id))
    if not created:
        response.status_code = status.HTTP_200_OK
    elif dispatcher is not None:
        dispatcher.wake()
    return JobPublic.model_validate(job)


@router.get("", response_model=JobsPublic)
async def list_jobs(
    request: Request,
    limit: Limit = 50,
    offset: Offset = 0,
    state: Annotated[
        list[JobState] | None, Query(description="Only jobs in these states (repeatable).")
    ] = None,
) -> Response:
    """List jobs, newest first, optionally only those in some states."""
    return await caching.in_read_session(
        request, partial(_jobs_page, states=state or [], limit=limit, offset=offset)
    )


def _jobs_page(session: Session, *, states: Sequence[str], limit: int, offset: int) -> Response:
    # The JobsPublic that response_model documents, encoded as pydantic would (byte for byte),
    # each job's part kept by service.api.caching under the rows it was made of.
    jobs, total = store.list_job_rows(session, states=states, limit=limit, offset=offset)
    parts = [caching.JOBS.get_or_build(rows, partial(_job_json, rows)) for rows in jobs]
    return caching.json_response(
        b'{"data":[%b],"count":%d,"limit":%d,"offset":%d}'
        % (b",".join(parts), total, limit, offset)
    )


def _job_json(rows: store.JobRows) -> bytes:
    return _JOB_JSON.dump_json(store.job_public_from_rows(rows))


@router.get("/{job_id}", response_model=JobPublic, responses=_NOT_FOUND)
def read_job(job_id: JobId, session: ReadSessionDep) -> JobPublic:
    """Read one job: state, stage, progress, per-stage timestamps, error."""
    return JobPublic.model_validate(store.get_job(session, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={
        202: {"model": JobPublic, "description": "Cancel requested; Ray work stops shortly."},
        **_NOT_FOUND,
        **_CONFLICT,
        **FORBIDDEN,
    },
)
def cancel_job(
    job_id: JobId,
    response: Response,
    session: SessionDep,
    principal: WriteAccess,
    dispatcher: DispatcherDep,
) -> JobPublic:
    """Cancel a queued or running job; its Ray work stops within seconds."""
    principal.check_owner(store.get_job(session, job_id).owner, f"job {job_id}")
    job = store.cancel_job(session, job_id)
    if job.state != "cancelled":
        response.status_code = status.HTTP_202_ACCEPTED
        if dispatcher is not None:
            dispatcher.wake()
    return JobPublic.model_validate(job)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**_NOT_FOUND, **_CONFLICT, **FORBIDDEN},
)
def delete_job(
    job_id: JobId, session: SessionDep, settings: SettingsDep, principal: WriteAccess
) -> Response:
    """Delete a finished job with its results and files."""
    principal.check_owner(store.get_job(session, job_id).owner, f"job {job_id}")
    store.delete_job(session, settings, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{job_id}/logs", response_model=JobLogsPublic, responses=_NOT_FOUND)
def read_job_logs(
    job_id: JobId,
    session: ReadSessionDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Only lines after this id (a cursor).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Lines at most.")] = 200,
) -> JobLogsPublic:
    """Read a job's log: state changes, stage boundaries, messages, per-epoch metrics."""
    events = store.list_events(session, job_id, after=after, limit=limit)
    return JobLogsPublic(
        data=[JobEventPublic.model_validate(e) for e in events],
        next_after=events[-1].id if events else after,
    )
