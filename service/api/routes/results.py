"""A job's results: its Pareto fronts (one per device) and the subnets it evaluated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from nas.hardware.device import NAME_PATTERN
from service.api.deps import JobId, Limit, Offset, ReadSessionDep
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic
from service.api.schemas.results import (
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

DeviceName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Device name (lower-case, 1-64).")
]


@router.get("/fronts", response_model=FrontsPublic, responses=_NOT_FOUND)
def list_fronts(job_id: JobId, session: ReadSessionDep) -> FrontsPublic:
    """The job's Pareto fronts, one per device, members ordered along each front."""
    fronts = store.list_fronts(session, job_id)
    return FrontsPublic(data=fronts, count=len(fronts))


@router.get("/fronts/{device}", response_model=FrontPublic, responses={**_NOT_FOUND, **_NOT_YET})
def read_front(job_id: JobId, device: DeviceName, session: ReadSessionDep) -> FrontPublic:
    """The job's Pareto front on one device, with its budget and best member."""
    return store.get_front(session, job_id, device)


@router.get("/subnets", response_model=SubnetsPublic, responses=_NOT_FOUND)
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
