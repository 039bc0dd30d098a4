"""Specialisation: the most accurate subnet of a finished job for any device and one budget.

The job's supernet and accuracy predictor are reused, so the search takes seconds, not a new
search job; but a built-in host device's table may first have to be profiled or re-anchored
(seconds to minutes). So the handler works in three steps and holds no transaction through
the long one: a short read-only snapshot of what it needs, the work with no session in use
(on SQLite any open write transaction holds the database-wide write lock, and every other
write would wait it out and answer 503), and one short write of the pick. The handler is a
plain ``def``: FastAPI runs it in its threadpool, so the work never blocks the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.orm import Session

from nas.data import DatasetSpec
from nas.hardware.device import BUILTIN_NAMES
from nas.hardware.table import LatencyTable
from service.api.auth import WriteAccess
from service.api.deps import JobId, ReadSessionDep, SessionDep, SettingsDep
from service.api.schemas.common import (
    COMMON_RESPONSES,
    FORBIDDEN,
    ErrorPublic,
    ValidationErrorPublic,
)
from service.api.schemas.results import (
    SPECIALIZE_CHECKS,
    SpecializeCreate,
    SpecializePublic,
    SubnetRecord,
)
from service.errors import ConflictError, InvalidFieldError
from service.settings import Settings
from service.store import results_read as store
from service.store.devices import get_device, latest_table
from service.store.jobs import get_job
from service.store.results import refresh_fronts
from workers.results import SubnetResult
from workers.spec import job_dir

if TYPE_CHECKING:
    from workers.specialize import SpecializedSubnet

router = APIRouter(prefix="/jobs", tags=["results"], responses=COMMON_RESPONSES)
#: What a stored subnet has that the search does not compare (rows, fine-tuning): picks are made
#: on inherited measured accuracy, as the fronts are.
_NOT_COMPARED = {"id", "job_id", "finetuned_accuracy", "finetune"}


@dataclass(frozen=True)
class _JobSnapshot:
    """What specialising a job needs from the database, as plain values: read in one short
    transaction that is over before the long work begins."""

    space: str
    preset: str
    dataset: DatasetSpec
    uploaded: LatencyTable | None  # a registered device's newest table; None for a built-in
    known: list[SubnetResult]  # the job's measured subnets: they compete with the proposals


def _snapshot(session: Session, job_id: int, body: SpecializeCreate) -> _JobSnapshot:
    """The job (succeeded, or 409), the registered device's table (404 for an unknown device)
    and the job's measured subnets."""
    job = get_job(session, job_id)
    if job.state != "succeeded":
        raise ConflictError(
            f"job {job_id} is {job.state}; specialisation reuses the supernet and predictor "
            "of a succeeded job"
        )
    uploaded = None
    if body.device not in BUILTIN_NAMES:
        get_device(session, body.device)  # 404 for a name that is neither built in nor registered
        uploaded = latest_table(session, body.device, job.space, job.preset)
        if uploaded is None and body.latency_ms is not None:
            raise InvalidFieldError(
                ("body", "device"),
                f"device {body.device!r} has no latency table for space {job.space!r} preset "
                f"{job.preset!r}; upload one (POST /api/v1/devices/{body.device}/latency-tables) "
                "or give a macs budget",
            )
    return _JobSnapshot(
        space=job.space,
        preset=job.preset,
        dataset=DatasetSpec.model_validate(job.spec["dataset"]),
        uploaded=uploaded,
        known=[
            SubnetResult.model_validate(s.model_dump(exclude=_NOT_COMPARED))
            for s in store.measured_subnets(session, job_id)
        ],
    )


def _specialise(
    settings: Settings, job_id: int, job: _JobSnapshot, body: SpecializeCreate
) -> SpecializedSubnet:
    """The long work, with no database session in use: a built-in host device's table
    (profiled here on first use, re-anchored when stale), then the search and measurements."""
    from nas.search import InfeasibleBudgetError
    from workers.specialize import (
        SpecializeRequest,
        UnmetBudgetError,
        host_table_for_job,
        specialize,
    )
    from workers.trained import JobFiles

    files = JobFiles(
        job_dir=job_dir(settings.artifact_dir, job_id),
        space=job.space,
        preset=job.preset,
        dataset=job.dataset,
        data_root=settings.data_root,
    )
    try:
        table = job.uploaded
        if body.device in BUILTIN_NAMES:
            table = host_table_for_job(settings.artifact_dir, body.device, files)
        try:
            request = SpecializeRequest(
                job=files,
                device=body.device,
                table=table,
                latency_ms=body.latency_ms,
                macs=body.macs,
                seed=body.seed,
                known=job.known,
            )
        except ValidationError as exc:  # the device's table does not fit the job
            reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise InvalidFieldError(("body", "device"), reasons) from None
        return specialize(request)
    except (InfeasibleBudgetError, UnmetBudgetError) as exc:
        field = "latency_ms" if body.latency_ms is not None else "macs"
        raise InvalidFieldError(("body", field), str(exc)) from None
    except FileNotFoundError as exc:
        raise ConflictError(
            f"job {job_id}'s files are incomplete, cannot specialise: {exc}"
        ) from None


@router.post(
    "/{job_id}/specialize",
    response_model=SpecializePublic,
    responses={
        404: {"model": ErrorPublic, "description": "No such job or device."},
        409: {"model": ErrorPublic, "description": "The job has not succeeded."},
        **FORBIDDEN,
        422: {
            "model": ValidationErrorPublic,
            "description": f"The fields at fault; beyond the schema, checked here: "
            f"{SPECIALIZE_CHECKS}.",
        },
    },
)
def specialize_job(
    job_id: JobId,
    body: SpecializeCreate,
    reads: ReadSessionDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: WriteAccess,
) -> SpecializePublic:
    """Find the most accurate measured subnet of a succeeded job for a device under a latency
    or MACs budget (new proposals measured on val, and timed on a host device, against the
    job's own measured subnets), and store it with the job's subnets."""
    principal.check_owner(get_job(reads, job_id).owner, f"job {job_id}")
    job = _snapshot(reads, job_id, body)
    reads.rollback()  # the snapshot is over: nothing stays open through the work below
    result = _specialise(settings, job_id, job, body)
    # the write session is first used here: the write lock is held for these two commits only
    record = SubnetRecord.model_validate(result.subnet.model_dump())
    subnet_id = store.record_subnet(session, job_id, record)
    refresh_fronts(session, job_id)  # a new measurement may join (or beat) a front member
    subnet = store.get_subnet(reads, subnet_id)  # read-only: no lock while the answer is sent
    tuned = {"finetuned_accuracy": "measured"} if subnet.finetuned_accuracy is not None else {}
    return SpecializePublic(
        subnet=subnet,
        device=result.device,
        budget=result.budget,
        figures={**result.figures, **tuned},
        from_job=result.from_job,
        candidates=result.candidates,
        rescaled=result.rescaled,
        seconds=result.seconds,
    )
