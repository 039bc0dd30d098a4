"""A job's results: its Pareto fronts (one per device) and the subnets it evaluated."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from nas.hardware.device import NAME_PATTERN
from service.api import caching
from service.api.deps import JobId, Limit, Offset, ReadSessionDep
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic, ValidationErrorPublic
from service.api.schemas.results import (
    SUBNETS_CHECKS,
    FrontPublic,
    FrontsPublic,
    SortKey,
    SortOrder,
    SubnetsPublic,
)
from service.store import results_read as store

router = APIRouter(prefix="/jobs/{job_id}", tags=["results"], responses=COMMON_RESPONSES)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such job, or no such front."}}
_NOT_YET = {409: {"model": ErrorPublic, "description": "The job has not searched yet."}}
_REVALIDATE: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "ETag": {
                "description": "A strong validator of this answer: send it back in "
                "If-None-Match to be told 304 if the front is unchanged.",
                "schema": {"type": "string"},
            },
            "Cache-Control": {
                "description": f"{caching.FRONT_CACHE_CONTROL}: keep it, but revalidate "
                "(a specialisation may still add to a finished job's front).",
                "schema": {"type": "string"},
            },
        }
    },
    304: {"description": "Not Modified: the If-None-Match ETag is the current one; no body."},
}
_FRONTS_JSON = TypeAdapter(FrontsPublic)
_FRONT_JSON = TypeAdapter(FrontPublic)

DeviceName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Device name (lower-case, 1-64).")
]


# The two front reads answer from service.api.caching: the rows are read on every request,
# the answer's bytes (and ETag) are built once per distinct set of rows.


@router.get("/fronts", response_model=FrontsPublic, responses={**_NOT_FOUND, **_REVALIDATE})
async def list_fronts(job_id: JobId, request: Request) -> Response:
    """The job's Pareto fronts, one per device, members ordered along each front."""
    return await caching.in_read_session(request, partial(_fronts, request, job_id))


@router.get(
    "/fronts/{device}",
    response_model=FrontPublic,
    responses={**_NOT_FOUND, **_NOT_YET, **_REVALIDATE},
)
async def read_front(job_id: JobId, device: DeviceName, request: Request) -> Response:
    """The job's Pareto front on one device, with its budget and best member."""
    return await caching.in_read_session(request, partial(_front, request, job_id, device))


def _fronts(request: Request, job_id: int, session: Session) -> Response:
    rows = store.read_front_rows(session, job_id)
    answer = caching.FRONTS.get_or_build(("fronts", rows), partial(_fronts_answer, rows))
    return caching.tagged_response(request, answer)


def _front(request: Request, job_id: int, device: str, session: Session) -> Response:
    rows = store.read_front_rows(session, job_id, device)
    if not rows.members:  # the 409 or 404 with its message (or a front written just now)
        return caching.json_response(
            _FRONT_JSON.dump_json(store.get_front(session, job_id, device))
        )
    answer = caching.FRONTS.get_or_build(("front", rows), partial(_front_answer, rows))
    return caching.tagged_response(request, answer)


def _fronts_answer(rows: store.FrontRows) -> caching.Tagged:
    fronts = store.fronts_from_rows(rows)
    return caching.Tagged(_FRONTS_JSON.dump_json(FrontsPublic(data=fronts, count=len(fronts))))


def _front_answer(rows: store.FrontRows) -> caching.Tagged:
    (front,) = store.fronts_from_rows(rows)
    return caching.Tagged(_FRONT_JSON.dump_json(front))


@router.get(
    "/subnets",
    response_model=SubnetsPublic,
    responses={
        **_NOT_FOUND,
        422: {
            "model": ValidationErrorPublic,
            "description": f"The fields at fault; beyond the schema, checked here: "
            f"{SUBNETS_CHECKS}.",
        },
    },
)
def list_subnets(
    job_id: JobId,
    session: ReadSessionDep,
    sort: Annotated[
        SortKey, Query(description="accuracy (measured, else predicted), macs, params, latency.")
    ] = "accuracy",
    order: Annotated[
        SortOrder | None, Query(description="Default: desc for accuracy, asc for the others.")
    ] = None,
    device: Annotated[
        str | None,
        Query(
            pattern=NAME_PATTERN,
            description="Whose latency sorts and filters (needed by sort=latency and "
            "max_latency_ms), and whose front on_front means.",
        ),
    ] = None,
    min_accuracy: Annotated[
        float | None, Query(ge=0, le=100, description="Percent, measured else predicted.")
    ] = None,
    max_macs: Annotated[int | None, Query(ge=0, le=10**15)] = None,
    max_latency_ms: Annotated[
        float | None, Query(ge=0, le=1e6, description="On `device`, measured else predicted.")
    ] = None,
    on_front: Annotated[
        bool | None,
        Query(description="Only subnets on (true) or off (false) a front (`device`'s if given)."),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SubnetsPublic:
    """A job's subnets, filtered and sorted; subnets without the sorted value come last."""
    query = store.SubnetQuery(
        sort=sort,
        order=order,
        device=device,
        min_accuracy=min_accuracy,
        max_macs=max_macs,
        max_latency_ms=max_latency_ms,
        on_front=on_front,
        limit=limit,
        offset=offset,
    )
    subnets, total = store.list_subnets(session, job_id, query)
    return SubnetsPublic(data=subnets, count=total, limit=limit, offset=offset)
