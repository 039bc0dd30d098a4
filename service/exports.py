"""Subnet exports on request: one bounded queue per API process, worked one export at a time.

An export extracts the subnet from its job's supernet, recalibrates BN and writes a file and a
row: seconds of CPU. So a download (a GET, open to anyone reads are open to) never exports; a
token-holder asks for the file with ``POST /subnets/{id}/exports``, which only queues the work
and answers at once. One worker thread drains a queue of at most ``MAX_PENDING`` exports, so a
flood of requests costs a 503, not unbounded CPU, and no request thread or database
transaction waits on the export.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from nas.data import DatasetSpec
from nas.export.formats import ExportFormat
from service.api.schemas.results import DOWNLOAD_FORMATS, DownloadFormat
from service.errors import ConflictError, ServiceError
from service.models import Artifact, Subnet
from service.settings import Settings
from service.store import results_read as store
from service.store.jobs import get_job
from workers.spec import job_dir
from workers.storage import ArtifactStore
from workers.trained import checkpoint_path

log = logging.getLogger(__name__)

#: Exports waiting or running in one process; one more is a 503 with Retry-After.
MAX_PENDING = 8

ExportState = Literal["queued", "running", "failed"]
Key = tuple[int, ExportFormat]


class QueueFullError(Exception):
    """More exports are waiting than one process works through in reasonable time."""


@dataclass
class ExportTask:
    """An export asked for and not yet a file: where it stands, and why it failed."""

    subnet_id: int
    format: ExportFormat
    state: ExportState = "queued"
    error: str | None = None
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


def stored_file(settings: Settings, artifact: Artifact | None) -> Path | None:
    """The artifact's file, if it is still there (and inside NAS_ARTIFACT_DIR)."""
    files = ArtifactStore(settings.artifact_dir)
    if artifact is None or not files.exists(artifact.path):
        return None
    return files.path(artifact.path)


def existing_file(
    session: Session, settings: Settings, subnet_id: int, fmt: DownloadFormat
) -> tuple[Artifact, Path] | None:
    """The subnet's file in this format, if one was made and is still on disk."""
    artifact = store.find_artifact(session, subnet_id, DOWNLOAD_FORMATS[fmt].kind)
    path = stored_file(settings, artifact)
    return (artifact, path) if artifact is not None and path is not None else None


def _export_dir_name(arch_id: str, subnet_id: int) -> str:
    """Where the exporting stage puts a subnet's files (``exports/<arch_id>/``), so a file
    made on request and one the stage made are the same file, registered once."""
    safe = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", arch_id)
    return arch_id if safe else f"subnet-{subnet_id}"


def check_exportable(session: Session, settings: Settings, subnet: Subnet) -> None:
    """Refuse at request time what the worker could only fail on: a job without a supernet,
    a fine-tuned subnet without its fine-tuned weights."""
    job = get_job(session, subnet.job_id)
    if job.state != "succeeded":
        raise ConflictError(
            f"job {job.id} is {job.state}; subnets are exported from the supernet of a "
            "succeeded job"
        )
    directory = job_dir(settings.artifact_dir, job.id)
    if not checkpoint_path(directory).is_file():
        raise ConflictError(
            f"job {job.id}'s trained supernet is not on disk; subnets without a file cannot "
            "be exported"
        )
    tuned = (subnet.finetune or {}).get("weights")
    if tuned is not None and not (directory / tuned).is_file():
        raise ConflictError(
            f"subnet {subnet.id}'s fine-tuned weights ({tuned}) are not on disk; it is exported "
            "with them or not at all"
        )


def export_subnet(
    session: Session, settings: Settings, subnet_id: int, fmt: ExportFormat
) -> Artifact:
    """Export one subnet from its job's supernet (BN recalibrated) and register the file. The
    session's transaction is closed while the export runs."""
    subnet = store.get_subnet_row(session, subnet_id)
    check_exportable(session, settings, subnet)
    job = get_job(session, subnet.job_id)
    job_id, arch_id, arch = job.id, subnet.arch_id, dict(subnet.arch)
    # the exporting stage exports a fine-tuned subnet with its fine-tuned weights, into the
    # same directory: a file made here again is the same file
    tuned = (subnet.finetune or {}).get("weights")
    weights: Literal["inherited", "finetuned"] = "inherited" if tuned is None else "finetuned"
    space, preset, dataset = job.space, job.preset, DatasetSpec.model_validate(job.spec["dataset"])
    session.rollback()

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
            weights=weights,
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


class ExportQueue:
    """The process's exports: asked for (coalesced per subnet and format), worked in order by
    one daemon thread, remembered until the file exists (then the artifact row tells)."""

    def __init__(
        self, settings: Settings, sessions: Callable[[], Session], max_pending: int = MAX_PENDING
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._queue: queue.Queue[Key] = queue.Queue()
        self._tasks: dict[Key, ExportTask] = {}
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._thread: threading.Thread | None = None

    def request(self, subnet_id: int, fmt: ExportFormat) -> ExportTask:
        """Queue an export, or answer the one already queued or running for the same file."""
        key = (subnet_id, fmt)
        with self._lock:
            task = self._tasks.get(key)
            if task is not None and task.state != "failed":
                return task
            pending = sum(t.state != "failed" for t in self._tasks.values())
            if pending >= self._max_pending:
                raise QueueFullError(
                    f"{pending} exports are already waiting in this process; try again shortly"
                )
            task = self._tasks[key] = ExportTask(subnet_id, fmt)
            self._queue.put(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="exports", daemon=True)
                self._thread.start()
            return task

    def status(self, subnet_id: int, fmt: ExportFormat) -> ExportTask | None:
        with self._lock:
            return self._tasks.get((subnet_id, fmt))

    def position(self, task: ExportTask) -> int:
        """Exports ahead of this one (0 when it runs)."""
        with self._lock:
            ahead = [t for t in self._tasks.values() if t.state in ("queued", "running")]
            ahead.sort(key=lambda t: t.requested_at)
            return next((i for i, t in enumerate(ahead) if t is task), 0)

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            with self._lock:
                task = self._tasks[key]
                task.state = "running"
            error = None
            try:
                with self._sessions() as session:
                    if existing_file(session, self._settings, *key) is None:
                        export_subnet(session, self._settings, *key)
            except ServiceError as exc:
                error = exc.detail
            except Exception as exc:  # the worker outlives any one export
                log.exception("export of subnet %d as %s failed", *key)
                error = f"export failed: {type(exc).__name__}"
            with self._lock:
                if error is None:
                    del self._tasks[key]  # the artifact row is the record from now on
                else:
                    task.state, task.error = "failed", error
                    task.finished_at = datetime.now(UTC)
