"""Specialisation: the most accurate subnet of a finished job for any device and one budget.

The job's supernet and accuracy predictor are reused, so this takes seconds, not a new
search job. The handler is a plain ``def``: FastAPI runs it in its threadpool, so the
evolution never blocks the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.orm import Session

from nas.data import DatasetSpec
from nas.hardware.device import BUILTIN_NAMES
from nas.hardware.table import LatencyTable
from service.api.auth import WriteAccess
from service.api.deps import JobId, SessionDep, SettingsDep
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic
from service.api.schemas.results import SpecializeCreate, SpecializePublic, SubnetRecord
from service.errors import ConflictError, InvalidFieldError
from service.models import Job
from service.settings import Settings
from service.store import results_read as store
from service.store.devices import get_device, latest_table
from service.store.jobs import get_job
from service.store.results import refresh_fronts
from workers.results import SubnetResult
from workers.spec import job_dir

router = APIRouter(prefix="/jobs", tags=["results"], responses=COMMON_RESPONSES)


def _device_table(
    session: Session, settings: Settings, job: Job, body: SpecializeCreate
) -> LatencyTable | None:
    """The device's latency table for the job's space and preset: profiled on this host for
    a built-in device, the newest uploaded one for a registered device. None only for a MACs
    budget on a device without a table (no latency to predict, none needed)."""
    if body.device in BUILTIN_NAMES:
        from workers.specialize import host_table

        return host_table(settings.artifact_dir, body.device, job.space, job.preset)
    get_device(session, body.device)  # 404 for a name that is neither built in nor registered
    table = latest_table(session, body.device, job.space, job.preset)
    if table is None and body.latency_ms is not None:
        raise InvalidFieldError(
            ("body", "device"),
            f"device {body.device!r} has no latency table for space {job.space!r} preset "
            f"{job.preset!r}; upload one (POST /api/v1/devices/{body.device}/latency-tables) "
            "or give a macs budget",
        )
    return table


@router.post(
    "/{job_id}/specialize",
    response_model=SpecializePublic,
    responses={
        404: {"model": ErrorPublic, "description": "No such job or device."},
        409: {"model": ErrorPublic, "description": "The job has not succeeded."},
    },
)
def specialize_job(
    job_id: JobId,
    body: SpecializeCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: WriteAccess,
) -> SpecializePublic:
    """Find the most accurate measured subnet of a succeeded job for a device under a latency
    or MACs budget (new proposals measured on val, and timed on a host device, against the
    job's own measured subnets), and store it with the job's subnets."""
    job = get_job(session, job_id)
    if job.state != "succeeded":
        raise ConflictError(
            f"job {job_id} is {job.state}; specialisation reuses the supernet and predictor "
            "of a succeeded job"
        )
    table = _device_table(session, settings, job, body)

    from nas.search import InfeasibleBudgetError
    from workers.specialize import SpecializeRequest, UnmetBudgetError, specialize

    try:
        request = SpecializeRequest(
            job_dir=job_dir(settings.artifact_dir, job_id),
            space=job.space,
            preset=job.preset,
            dataset=DatasetSpec.model_validate(job.spec["dataset"]),
            data_root=settings.data_root,
            device=body.device,
            table=table,
            latency_ms=body.latency_ms,
            macs=body.macs,
            seed=body.seed,
            known=[
                SubnetResult.model_validate(s.model_dump(exclude={"id", "job_id"}))
                for s in store.measured_subnets(session, job_id)
            ],
        )
    except ValidationError as exc:  # the device's table does not fit the job
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise InvalidFieldError(("body", "device"), reasons) from None
    session.rollback()  # no transaction stays open through the search (seconds)
    try:
        result = specialize(request)
    except (InfeasibleBudgetError, UnmetBudgetError) as exc:
        field = "latency_ms" if body.latency_ms is not None else "macs"
        raise InvalidFieldError(("body", field), str(exc)) from None
    except FileNotFoundError as exc:
        raise ConflictError(
            f"job {job_id}'s files are incomplete, cannot specialise: {exc}"
        ) from None
    record = SubnetRecord.model_validate(result.subnet.model_dump())
    subnet_id = store.record_subnet(session, job_id, record)
    refresh_fronts(session, job_id)  # a new measurement may join (or beat) a front member
    return SpecializePublic(
        subnet=store.get_subnet(session, subnet_id),
        device=result.device,
        budget=result.budget,
        figures=result.figures,
        from_job=result.from_job,
        candidates=result.candidates,
        seconds=result.seconds,
    )
