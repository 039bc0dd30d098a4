"""One subnet: its details, its files (those that exist), and exports and fine-tunings asked
for with a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from nas.export.formats import ExportFormat
from service.api.auth import Principal, WriteAccess
from service.api.deps import MAX_ID, FinetunesDep, ReadSessionDep, SessionDep, SettingsDep
from service.api.schemas.common import (
    COMMON_RESPONSES,
    FORBIDDEN,
    ErrorPublic,
    ValidationErrorPublic,
)
from service.api.schemas.exports import WEIGHTS_TEXT, ExportCreate, ExportPublic
from service.api.schemas.finetunes import FINETUNE_CHECKS, FinetuneCreate, FinetuneTaskPublic
from service.api.schemas.results import (
    DOWNLOAD_FORMATS,
    DownloadFormat,
    SubnetDetailPublic,
    Weights,
)
from service.errors import ConflictError
from service.exports import (
    ExportQueue,
    QueueFullError,
    check_exportable,
    check_trained,
    chosen_weights,
    download_file,
    existing_export,
)
from service.finetunes import finetune_public, finished_weights, requested_settings
from service.models import Subnet
from service.settings import Settings
from service.store import results_read as store
from service.store.jobs import get_job

router = APIRouter(prefix="/subnets", tags=["subnets"], responses=COMMON_RESPONSES)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such subnet."}}

SubnetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The subnet's id.")]
RETRY_AFTER_S = "10"  # an export takes seconds; a full queue drains in tens of them
FINETUNE_RETRY_AFTER_S = "60"  # a fine-tuning takes minutes
Format = Annotated[ExportFormat, PathParam(description="onnx, torchscript or pytorch.")]
WeightsQuery = Annotated[Weights | None, Query(description=f"The file's weights: {WEIGHTS_TEXT}")]
_NOT_FINETUNED = "weights=finetuned on a subnet never fine-tuned"


def _exports(request: Request) -> ExportQueue:
    """The process's export queue (made with the app's session factory on first use)."""
    state = request.app.state
    if getattr(state, "exports", None) is None:
        state.exports = ExportQueue(state.settings, state.session_factory)
    return state.exports


def _owned_subnet(session: Session, subnet_id: int, principal: Principal) -> Subnet:
    """The subnet (404), if the principal may act on its job (403)."""
    subnet = store.get_subnet_row(session, subnet_id)
    principal.check_owner(get_job(session, subnet.job_id).owner, f"subnet {subnet_id}'s job")
    return subnet


def _export_public(
    session: Session,
    settings: Settings,
    exports: ExportQueue,
    subnet: Subnet,
    fmt: ExportFormat,
    weights: Weights,
) -> ExportPublic:
    subnet_id = subnet.id
    found = existing_export(session, settings, subnet, fmt, weights)
    if found is not None:
        artifact, _ = found
        return ExportPublic(
            subnet_id=subnet_id,
            format=fmt,
            weights=weights,
            state="ready",
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            download_url=f"/api/v1/subnets/{subnet_id}/download?format={fmt}&weights={weights}",
            requested_at=artifact.created_at,
        )
    task = exports.status(subnet_id, fmt, weights)
    if task is None:
        return ExportPublic(subnet_id=subnet_id, format=fmt, weights=weights, state="not_requested")
    return ExportPublic(
        subnet_id=subnet_id,
        format=fmt,
        weights=weights,
        state=task.state,
        position=exports.position(task) if task.state == "queued" else None,
        error=task.error,
        requested_at=task.requested_at,
    )


@router.get("/{subnet_id}", response_model=SubnetDetailPublic, responses=_NOT_FOUND)
def read_subnet(subnet_id: SubnetId, session: ReadSessionDep) -> SubnetDetailPublic:
    """One subnet with its latencies per device, its files and the fronts it is on."""
    return store.get_subnet(session, subnet_id)


@router.post(
    "/{subnet_id}/exports",
    response_model=ExportPublic,
    status_code=202,
    responses={
        200: {"model": ExportPublic, "description": "The file exists already: state ready."},
        **_NOT_FOUND,
        409: {
            "model": ErrorPublic,
            "description": f"The subnet's job did not succeed, its trained supernet or the "
            f"fine-tuned weights asked for are gone, or {_NOT_FINETUNED}.",
        },
        **FORBIDDEN,
        503: {"model": ErrorPublic, "description": "The export queue is full; retry later."},
    },
)
def request_export(
    subnet_id: SubnetId,
    body: ExportCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    principal: WriteAccess,
) -> ExportPublic:
    """Make the subnet's file in one format, with its own weights or those asked for: queued,
    one export at a time per process; poll ``GET /subnets/{id}/exports/{format}`` until it is
    ready, then download it."""
    exports = _exports(request)
    subnet = _owned_subnet(session, subnet_id, principal)
    weights = chosen_weights(subnet, body.weights)
    if existing_export(session, settings, subnet, body.format, weights) is not None:
        response.status_code = 200
    else:
        check_exportable(session, settings, subnet, weights)
        try:
            exports.request(subnet_id, body.format, weights)
        except QueueFullError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
    answer = _export_public(session, settings, exports, subnet, body.format, weights)
    session.rollback()  # only read: release SQLite's write lock at once
    return answer


@router.get(
    "/{subnet_id}/exports/{format}",
    response_model=ExportPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorPublic, "description": f"{_NOT_FINETUNED}."}},
)
def read_export(
    subnet_id: SubnetId,
    format: Format,
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    weights: WeightsQuery = None,
) -> ExportPublic:
    """Where the subnet's file in this format and weights stands (a read: it never
    exports)."""
    subnet = store.get_subnet_row(session, subnet_id)
    chosen = chosen_weights(subnet, weights)
    return _export_public(session, settings, _exports(request), subnet, format, chosen)


@router.get(
    "/{subnet_id}/download",
    response_class=FileResponse,
    responses={
        200: {
            "content": {info.media_type: {} for info in DOWNLOAD_FORMATS.values()},
            "description": "The file; its sha256 in the X-Checksum-SHA256 header.",
        },
        **_NOT_FOUND,
        409: {
            "model": ErrorPublic,
            "description": "No file in this format and weights yet: POST /subnets/{id}/exports "
            "makes it (finetuned: the finetuning stage, or POST /subnets/{id}/finetune); or "
            f"{_NOT_FINETUNED}, or format=finetuned with weights=inherited.",
        },
    },
)
def download_subnet(
    subnet_id: SubnetId,
    session: ReadSessionDep,
    settings: SettingsDep,
    format: Annotated[
        DownloadFormat,
        Query(description="onnx, torchscript, pytorch, or finetuned (the fine-tuned state dict)."),
    ] = "onnx",
    weights: WeightsQuery = None,
) -> FileResponse:
    """Download a subnet as ONNX, TorchScript or weights + arch (zip), with its own weights or
    those asked for, or its fine-tuned weights: a file that exists. A GET never exports;
    ``POST /subnets/{id}/exports`` (with a token) makes an export's file, the finetuning stage
    or ``POST /subnets/{id}/finetune`` the fine-tuned weights."""
    subnet = store.get_subnet_row(session, subnet_id)
    artifact, path, name = download_file(session, settings, subnet, format, weights)
    return FileResponse(
        path,
        media_type=DOWNLOAD_FORMATS[format].media_type,
        filename=name,
        headers={"X-Checksum-SHA256": artifact.sha256},
    )


# --- fine-tuning on request ------------------------------------------------------------------

_FINETUNE_CONFLICT = {
    409: {
        "model": ErrorPublic,
        "description": "The subnet's job did not succeed, or its trained supernet is gone.",
    }
}


@router.post(
    "/{subnet_id}/finetune",
    response_model=FinetuneTaskPublic,
    status_code=202,
    responses={
        200: {
            "model": FinetuneTaskPublic,
            "description": "Fine-tuned already (by the finetuning stage or a request): state "
            "succeeded with its figures; nothing is run.",
        },
        **_NOT_FOUND,
        **_FINETUNE_CONFLICT,
        **FORBIDDEN,
        422: {
            "model": ValidationErrorPublic,
            "description": f"The fields at fault; beyond the schema, checked here: "
            f"{FINETUNE_CHECKS}.",
        },
        503: {"model": ErrorPublic, "description": "The fine-tuning queue is full; retry later."},
    },
)
def request_finetune(
    subnet_id: SubnetId,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    finetunes: FinetunesDep,
    principal: WriteAccess,
    body: FinetuneCreate | None = None,
) -> FinetuneTaskPublic:
    """Fine-tune the subnet standalone from its inherited weights on Ray Tune, as the
    finetuning stage does: queued, one subnet at a time per process; poll
    ``GET /subnets/{id}/finetune`` for its progress."""
    subnet = _owned_subnet(session, subnet_id, principal)
    if finished_weights(session, settings, subnet) is not None:
        response.status_code = 200
    else:
        job = check_trained(session, settings, subnet, "fine-tuned")
        asked = {} if body is None else body.model_dump(exclude_none=True)
        chosen = requested_settings(job, asked)
        try:
            finetunes.request(subnet_id, chosen)
        except QueueFullError as exc:
            raise HTTPException(
                503, str(exc), headers={"Retry-After": FINETUNE_RETRY_AFTER_S}
            ) from None
    answer = finetune_public(session, settings, finetunes, subnet)
    session.rollback()  # only read: release SQLite's write lock at once
    return answer


@router.get("/{subnet_id}/finetune", response_model=FinetuneTaskPublic, responses=_NOT_FOUND)
def read_finetune(
    subnet_id: SubnetId, session: ReadSessionDep, settings: SettingsDep, finetunes: FinetunesDep
) -> FinetuneTaskPublic:
    """Where the subnet's fine-tuning stands: progress while it runs, both accuracies once it
    succeeded (a read: it never fine-tunes)."""
    subnet = store.get_subnet_row(session, subnet_id)
    return finetune_public(session, settings, finetunes, subnet)


@router.delete(
    "/{subnet_id}/finetune",
    response_model=FinetuneTaskPublic,
    responses={
        202: {
            "model": FinetuneTaskPublic,
            "description": "Running: its trials are asked to stop (cancel_requested); it reads "
            "cancelled once they have, with nothing recorded.",
        },
        **_NOT_FOUND,
        409: {"model": ErrorPublic, "description": "No fine-tuning is queued or running."},
        **FORBIDDEN,
    },
)
def cancel_finetune(
    subnet_id: SubnetId,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    finetunes: FinetunesDep,
    principal: WriteAccess,
) -> FinetuneTaskPublic:
    """Cancel the subnet's fine-tuning: a queued one at once (200), a running one as soon as
    Ray Tune has stopped its trials (202)."""
    subnet = _owned_subnet(session, subnet_id, principal)
    task = finetunes.cancel(subnet_id)
    if task is None:
        raise ConflictError(f"subnet {subnet_id} has no fine-tuning queued or running")
    if task.state == "running":
        response.status_code = 202
    answer = finetune_public(session, settings, finetunes, subnet)
    session.rollback()
    return answer
