"""One subnet: its details, its files (those that exist), and exports asked for with a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from nas.export.formats import ExportFormat
from service.api.auth import WriteAccess
from service.api.deps import MAX_ID, ReadSessionDep, SessionDep, SettingsDep
from service.api.schemas.common import COMMON_RESPONSES, FORBIDDEN, ErrorPublic
from service.api.schemas.exports import ExportCreate, ExportPublic
from service.api.schemas.results import DOWNLOAD_FORMATS, DownloadFormat, SubnetDetailPublic
from service.errors import ConflictError
from service.exports import ExportQueue, QueueFullError, check_exportable, existing_file
from service.settings import Settings
from service.store import results_read as store
from service.store.jobs import get_job

router = APIRouter(prefix="/subnets", tags=["subnets"], responses=COMMON_RESPONSES)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such subnet."}}

SubnetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The subnet's id.")]
RETRY_AFTER_S = "10"  # an export takes seconds; a full queue drains in tens of them
Format = Annotated[ExportFormat, PathParam(description="onnx, torchscript or pytorch.")]


def _exports(request: Request) -> ExportQueue:
    """The process's export queue (made with the app's session factory on first use)."""
    state = request.app.state
    if getattr(state, "exports", None) is None:
        state.exports = ExportQueue(state.settings, state.session_factory)
    return state.exports


def _export_public(
    session: Session, settings: Settings, exports: ExportQueue, subnet_id: int, fmt: ExportFormat
) -> ExportPublic:
    found = existing_file(session, settings, subnet_id, fmt)
    if found is not None:
        artifact, _ = found
        return ExportPublic(
            subnet_id=subnet_id,
            format=fmt,
            state="ready",
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            download_url=f"/api/v1/subnets/{subnet_id}/download?format={fmt}",
            requested_at=artifact.created_at,
        )
    task = exports.status(subnet_id, fmt)
    if task is None:
        return ExportPublic(subnet_id=subnet_id, format=fmt, state="not_requested")
    return ExportPublic(
        subnet_id=subnet_id,
        format=fmt,
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
        409: {"model": ErrorPublic, "description": "The subnet's job did not succeed."},
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
    """Make the subnet's file in one format: queued, one export at a time per process; poll
    ``GET /subnets/{id}/exports/{format}`` until it is ready, then download it."""
    exports = _exports(request)
    subnet = store.get_subnet_row(session, subnet_id)
    principal.check_owner(get_job(session, subnet.job_id).owner, f"subnet {subnet_id}'s job")
    if existing_file(session, settings, subnet_id, body.format) is not None:
        response.status_code = 200
    else:
        check_exportable(session, settings, subnet)
        try:
            exports.request(subnet_id, body.format)
        except QueueFullError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
    answer = _export_public(session, settings, exports, subnet_id, body.format)
    session.rollback()  # only read: release SQLite's write lock at once
    return answer


@router.get("/{subnet_id}/exports/{format}", response_model=ExportPublic, responses=_NOT_FOUND)
def read_export(
    subnet_id: SubnetId,
    format: Format,
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
) -> ExportPublic:
    """Where the subnet's file in this format stands (a read: it never exports)."""
    store.get_subnet_row(session, subnet_id)
    return _export_public(session, settings, _exports(request), subnet_id, format)


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
            "description": "No file in this format yet: POST /subnets/{id}/exports makes it "
            "(finetuned: only the finetuning stage does).",
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
) -> FileResponse:
    """Download a subnet as ONNX, TorchScript or weights + arch (zip), or its fine-tuned
    weights: a file that exists. A GET never exports; ``POST /subnets/{id}/exports`` (with a
    token) makes an export's file, the finetuning stage the fine-tuned weights."""
    info = DOWNLOAD_FORMATS[format]
    subnet = store.get_subnet_row(session, subnet_id)
    found = existing_file(session, settings, subnet_id, format)
    if found is None and format == "finetuned":
        why = (
            "was not fine-tuned (the finetuning stage trains each device's best subnets; the "
            "job spec's finetune says how many)"
            if subnet.finetuned_accuracy is None
            else "has no fine-tuned weights on disk any more"
        )
        raise ConflictError(f"subnet {subnet_id} {why}")
    if found is None:
        raise ConflictError(
            f"subnet {subnet_id} has no {format} file yet; make it with "
            f'POST /api/v1/subnets/{subnet_id}/exports {{"format": "{format}"}} (needs a '
            f"token), then poll GET /api/v1/subnets/{subnet_id}/exports/{format}"
        )
    artifact, path = found
    return FileResponse(
        path,
        media_type=info.media_type,
        filename=f"subnet-{subnet_id}{info.suffix}",
        headers={"X-Checksum-SHA256": artifact.sha256},
    )
