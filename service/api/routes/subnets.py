"""One subnet: its details, and its files (exported on demand the first time one is asked for)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from nas.data import DatasetSpec
from service.api.deps import MAX_ID, ReadSessionDep, SessionDep, SettingsDep
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic
from service.api.schemas.results import DOWNLOAD_FORMATS, DownloadFormat, SubnetDetailPublic
from service.errors import ConflictError
from service.models import Artifact, Subnet
from service.settings import Settings
from service.store import results_read as store
from service.store.jobs import get_job
from workers.spec import job_dir
from workers.storage import ArtifactStore

router = APIRouter(prefix="/subnets", tags=["subnets"], responses=COMMON_RESPONSES)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such subnet."}}

SubnetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The subnet's id.")]

# One export of a subnet at a time in this process: a second request for the same file waits
# and then streams what the first wrote, instead of writing the same files concurrently.
_export_locks: dict[int, threading.Lock] = {}
_export_locks_guard = threading.Lock()


def _export_lock(subnet_id: int) -> threading.Lock:
    with _export_locks_guard:
        return _export_locks.setdefault(subnet_id, threading.Lock())


def _stored_file(settings: Settings, artifact: Artifact | None) -> Path | None:
    """The artifact's file, if it is still there (and inside NAS_ARTIFACT_DIR)."""
    store = ArtifactStore(settings.artifact_dir)
    if artifact is None or not store.exists(artifact.path):
        return None
    return store.path(artifact.path)


def _export_dir_name(arch_id: str, subnet_id: int) -> str:
    """Where the exporting stage puts a subnet's files (``exports/<arch_id>/``), so a file
    made on demand and one the stage made are the same file, registered once."""
    safe = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", arch_id)
    return arch_id if safe else f"subnet-{subnet_id}"


def _export(session: Session, settings: Settings, subnet: Subnet, fmt: DownloadFormat) -> Artifact:
    """Export the subnet from its job's supernet (BN recalibrated) and register the file."""
    job = get_job(session, subnet.job_id)
    if job.state != "succeeded":
        raise ConflictError(
            f"job {job.id} is {job.state}; subnets are exported from the supernet of a "
            "succeeded job"
        )
    job_id, subnet_id, arch_id, arch = job.id, subnet.id, subnet.arch_id, dict(subnet.arch)
    space, preset, dataset = job.space, job.preset, DatasetSpec.model_validate(job.spec["dataset"])
    session.rollback()  # no transaction stays open through the export (seconds)

    from workers.specialize import export_subnet_files  # torch: only when a file is made

    directory = job_dir(settings.artifact_dir, job_id)
    try:
        files = export_subnet_files(
            directory,
            space=space,
            preset=preset,
            dataset=dataset,
            data_root=settings.data_root,
            arch=arch,
            formats=[fmt],
            out_dir=directory / "exports" / _export_dir_name(arch_id, subnet_id),
        )
    except FileNotFoundError as exc:
        raise ConflictError(f"job {job_id}'s files are incomplete, cannot export: {exc}") from None
    exported = files[fmt]
    return store.record_artifact(
        session,
        job_id=job_id,
        subnet_id=subnet_id,
        kind=DOWNLOAD_FORMATS[fmt].kind,
        path=ArtifactStore(settings.artifact_dir).relative(exported.path),
        sha256=exported.sha256,
        size_bytes=exported.size_bytes,
    )


@router.get("/{subnet_id}", response_model=SubnetDetailPublic, responses=_NOT_FOUND)
def read_subnet(subnet_id: SubnetId, session: ReadSessionDep) -> SubnetDetailPublic:
    """One subnet with its latencies per device, its files and the fronts it is on."""
    return store.get_subnet(session, subnet_id)


@router.get(
    "/{subnet_id}/download",
    response_class=FileResponse,
    responses={
        200: {
            "content": {info.media_type: {} for info in DOWNLOAD_FORMATS.values()},
            "description": "The file; its sha256 in the X-Checksum-SHA256 header.",
        },
        **_NOT_FOUND,
        409: {"model": ErrorPublic, "description": "Not exported, and the job did not succeed."},
    },
)
def download_subnet(
    subnet_id: SubnetId,
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[DownloadFormat, Query(description="onnx, torchscript or pytorch.")] = "onnx",
) -> FileResponse:
    """Download a subnet as ONNX, TorchScript or weights + arch (zip), exported on demand."""
    info = DOWNLOAD_FORMATS[format]
    subnet = store.get_subnet_row(session, subnet_id)
    artifact = store.find_artifact(session, subnet_id, info.kind)
    path = _stored_file(settings, artifact)
    if path is None:
        with _export_lock(subnet_id):
            session.rollback()  # a fresh snapshot: see what a request that held the lock wrote
            artifact = store.find_artifact(session, subnet_id, info.kind)
            path = _stored_file(settings, artifact)
            if path is None:
                artifact = _export(session, settings, subnet, format)
                path = _stored_file(settings, artifact)
    if artifact is None or path is None:
        raise ConflictError(f"subnet {subnet_id}'s {format} file vanished; try again")
    return FileResponse(
        path,
        media_type=info.media_type,
        filename=f"subnet-{subnet_id}{info.suffix}",
        headers={"X-Checksum-SHA256": artifact.sha256},
    )
