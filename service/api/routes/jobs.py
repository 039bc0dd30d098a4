"""Jobs: submit, list, read, cancel, delete, and read the log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

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
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic
from service.api.schemas.jobs import (
    JobCreate,
    JobEventPublic,
    JobLogsPublic,
    JobPublic,
    JobsPublic,
)
from service.models import JobState
from service.store import jobs as store

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=COMMON_RESPONSES)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such job."}}
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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={200: {"model": JobPublic, "description": "Replayed: the key's job."}, **_CONFLICT},
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
def list_jobs(
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    state: Annotated[
        list[JobState] | None, Query(description="Only jobs in these states (repeatable).")
    ] = None,
) -> JobsPublic:
    """List jobs, newest first, optionally only those in some states."""
    jobs, total = store.list_jobs(session, states=state or [], limit=limit, offset=offset)
    return JobsPublic(
        data=[JobPublic.model_validate(job) for job in jobs],
        count=total,
        limit=limit,
        offset=offset,
    )


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
    responses={**_NOT_FOUND, **_CONFLICT},
)
def delete_job(
    job_id: JobId, session: SessionDep, settings: SettingsDep, principal: WriteAccess
) -> Response:
    """Delete a finished job with its results and files."""
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
