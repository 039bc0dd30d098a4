"""Subnet exports on request: one bounded queue per API process, worked one export at a time.

An export extracts the subnet from its job's supernet, recalibrates BN and writes a file and a
row: seconds of CPU. So a download (a GET, open to anyone reads are open to) never exports; a
token-holder asks for the file with ``POST /subnets/{id}/exports``, which only queues the work
and answers at once. One worker thread drains a queue of at most ``MAX_PENDING`` exports, so a
flood of requests costs a 503, not unbounded CPU, and no request thread or database
transaction waits on the export.

An export has the subnet's own weights (fine-tuned once it was fine-tuned, else inherited) or
those asked for; ``export_target`` says where each is kept. A subnet fine-tuned on request
keeps the exports made before as its inherited ones (``inherited_exports_refiled``).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nas.data import DatasetSpec
from nas.export.formats import FORMATS, ExportFormat
from service.api.schemas.results import (
    DOWNLOAD_FORMATS,
    DownloadFormat,
    ExportFile,
    Weights,
    default_weights,
    export_file,
)
from service.errors import ConflictError, ServiceError
from service.models import Artifact, Job, Subnet
from service.settings import Settings
from service.store import results_read as store
from service.store.jobs import get_job
from workers.spec import job_dir
from workers.storage import ArtifactStore
from workers.trained import JobFiles, checkpoint_path

log = logging.getLogger(__name__)

#: Exports waiting or running in one process; one more is a 503 with Retry-After.
MAX_PENDING = 8

ExportState = Literal["queued", "running", "failed"]
Key = tuple[int, ExportFormat, Weights]


class QueueFullError(Exception):
    """More work (exports, fine-tunings) is waiting than one process gets through in reasonable
    time."""


@dataclass
class ExportTask:
    """An export asked for and not yet a file: where it stands, and why it failed."""

    subnet_id: int
    format: ExportFormat
    weights: Weights
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
    session: Session, settings: Settings, subnet_id: int, kind: str
) -> tuple[Artifact, Path] | None:
    """The subnet's file of this artifact kind, if one was made and is still on disk."""
    artifact = store.find_artifact(session, subnet_id, kind)
    path = stored_file(settings, artifact)
    return (artifact, path) if artifact is not None and path is not None else None


def _export_dir_name(arch_id: str, subnet_id: int) -> str:
    """Where the exporting stage puts a subnet's files (``exports/<arch_id>/``), so a file
    made on request and one the stage made are the same file, registered once."""
    safe = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", arch_id)
    return arch_id if safe else f"subnet-{subnet_id}"


def chosen_weights(subnet: Subnet, asked: Weights | None) -> Weights:
    """The weights of the subnet's export: those asked for, else its own (fine-tuned once it
    was fine-tuned); fine-tuned weights of a subnet never fine-tuned are a 409 saying how to
    have them."""
    if asked == "finetuned" and subnet.finetune is None:
        raise ConflictError(
            f"weights: subnet {subnet.id} was never fine-tuned, so it has no fine-tuned weights "
            f"to export; POST /api/v1/subnets/{subnet.id}/finetune fine-tunes it (needs a token)"
        )
    return asked or default_weights(subnet.finetune is not None)


def export_target(subnet: Subnet, fmt: ExportFormat, weights: Weights) -> tuple[ExportFile, Path]:
    """The artifact kind of the subnet's export and its directory, relative to the job's."""
    where = export_file(fmt, weights, finetuned=subnet.finetune is not None)
    return where, Path("exports", _export_dir_name(subnet.arch_id, subnet.id), where.variant)


def existing_export(
    session: Session, settings: Settings, subnet: Subnet, fmt: ExportFormat, weights: Weights
) -> tuple[Artifact, Path] | None:
    """The subnet's export in this format with these weights, if it is on disk."""
    where, _ = export_target(subnet, fmt, weights)
    return existing_file(session, settings, subnet.id, where.kind)


def download_file(
    session: Session,
    settings: Settings,
    subnet: Subnet,
    fmt: DownloadFormat,
    weights: Weights | None,
) -> tuple[Artifact, Path, str]:
    """The subnet's file to serve and the name to give it: an export with the subnet's own
    weights or those asked for, or the fine-tuned weights; a 409 saying how to have one that
    is not there."""
    chosen = chosen_weights(subnet, weights)
    suffix = DOWNLOAD_FORMATS[fmt].suffix
    if fmt != "finetuned":
        where, _ = export_target(subnet, fmt, chosen)
        found = existing_file(session, settings, subnet.id, where.kind)
        if found is None:
            raise ConflictError(
                f"subnet {subnet.id} has no {fmt} file with {chosen} weights yet; make it with "
                f'POST /api/v1/subnets/{subnet.id}/exports {{"format": "{fmt}", "weights": '
                f'"{chosen}"}} (needs a token), then poll '
                f"GET /api/v1/subnets/{subnet.id}/exports/{fmt}?weights={chosen}"
            )
        tag = f".{where.variant}" if where.variant else ""
        return (*found, f"subnet-{subnet.id}{tag}{suffix}")
    if weights == "inherited":
        raise ConflictError(
            "weights: the fine-tuned weights file (format=finetuned) holds the fine-tuned "
            "weights; weights=inherited goes with onnx, torchscript or pytorch"
        )
    found = existing_file(session, settings, subnet.id, DOWNLOAD_FORMATS[fmt].kind)
    if found is None:
        why = (
            "was not fine-tuned (the finetuning stage trains each device's best subnets; "
            f"POST /api/v1/subnets/{subnet.id}/finetune fine-tunes any, with a token)"
            if subnet.finetuned_accuracy is None
            else "has no fine-tuned weights on disk any more"
        )
        raise ConflictError(f"subnet {subnet.id} {why}")
    return (*found, f"subnet-{subnet.id}{suffix}")


@contextmanager
def inherited_exports_refiled(
    session: Session, settings: Settings, subnet: Subnet
) -> Iterator[None]:
    """For a subnet just fine-tuned (its row says so, uncommitted): the default exports it had
    hold the inherited weights, so their files and rows move to the inherited export's kind and
    directory (sha256 and size unchanged) and a new default export gets the fine-tuned ones.
    The caller commits inside; files are moved back when that fails."""
    files = ArtifactStore(settings.artifact_dir)
    job_root = job_dir(settings.artifact_dir, subnet.job_id)
    moves: list[tuple[Path, Path]] = []
    for fmt in FORMATS:
        was = export_file(fmt, "inherited", finetuned=False).kind
        now, directory = export_target(subnet, fmt, "inherited")
        rows = session.scalars(
            select(Artifact).where(Artifact.subnet_id == subnet.id, Artifact.kind == was)
        )
        for row in rows.all():
            source = files.path(row.path)
            target = job_root / directory / source.name
            path = files.relative(target)
            session.execute(delete(Artifact).where(Artifact.path == path, Artifact.id != row.id))
            row.kind, row.path = now.kind, path
            if source.is_file():
                moves.append((source, target))
    session.flush()
    moved: list[tuple[Path, Path]] = []
    try:
        for source, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            moved.append((source, target))
        yield
    except BaseException:
        for source, target in reversed(moved):
            target.replace(source)
        raise


def check_trained(session: Session, settings: Settings, subnet: Subnet, use: str) -> Job:
    """The subnet's job, refused (409) unless it succeeded and its trained supernet is on disk:
    every subnet made on request (``use``: exported, fine-tuned) is extracted from it."""
    job = get_job(session, subnet.job_id)
    if job.state != "succeeded":
        raise ConflictError(
            f"job {job.id} is {job.state}; subnets are {use} from the supernet of a succeeded job"
        )
    if not checkpoint_path(job_dir(settings.artifact_dir, job.id)).is_file():
        raise ConflictError(
            f"job {job.id}'s trained supernet is not on disk; no subnet of it can be {use}"
        )
    return job


def check_exportable(
    session: Session, settings: Settings, subnet: Subnet, weights: Weights
) -> None:
    """Refuse at request time what the worker could only fail on: a job without a supernet,
    an export with fine-tuned weights that are not on disk."""
    job = check_trained(session, settings, subnet, "exported")
    tuned = (subnet.finetune or {}).get("weights") if weights == "finetuned" else None
    if tuned is not None and not (job_dir(settings.artifact_dir, job.id) / tuned).is_file():
        raise ConflictError(
            f"subnet {subnet.id}'s fine-tuned weights ({tuned}) are not on disk; only its "
            "inherited weights can be exported (weights: inherited)"
        )


def job_files(settings: Settings, job: Job) -> JobFiles:
    """Where the job's files are and what it was trained on, for any process that loads it."""
    return JobFiles(
        job_dir=job_dir(settings.artifact_dir, job.id),
        space=job.space,
        preset=job.preset,
        dataset=DatasetSpec.model_validate(job.spec["dataset"]),
        data_root=settings.data_root,
    )


def export_subnet(
    session: Session, settings: Settings, subnet_id: int, fmt: ExportFormat, weights: Weights
) -> Artifact:
    """Export one subnet with these weights (inherited: from its job's supernet, BN
    recalibrated) and register the file. The session's transaction is closed while the export
    runs."""
    subnet = store.get_subnet_row(session, subnet_id)
    check_exportable(session, settings, subnet, weights)
    job = get_job(session, subnet.job_id)
    job_id, arch = job.id, dict(subnet.arch)
    # a default export goes where the exporting stage writes it: a file made here again is
    # the same file
    _, planned = export_target(subnet, fmt, weights)
    files = job_files(settings, job)
    session.rollback()

    from workers.specialize import export_subnet_files  # torch: only when a file is made

    try:
        made = export_subnet_files(
            files, arch=arch, formats=[fmt], out_dir=files.job_dir / planned, weights=weights
        )
    except FileNotFoundError as exc:
        raise ConflictError(f"job {job_id}'s files are incomplete, cannot export: {exc}") from None
    exported = made[fmt]
    path = exported.path
    # fine-tuned on request meanwhile: the inherited file goes where that fine-tuning moved
    # the others; the row lock orders this with the move (``inherited_exports_refiled``)
    subnet = session.get_one(Subnet, subnet_id, with_for_update=True, populate_existing=True)
    where, directory = export_target(subnet, fmt, weights)
    if directory != planned:
        path = files.job_dir / directory / exported.path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        exported.path.replace(path)
    return store.record_artifact(
        session,
        job_id=job_id,
        subnet_id=subnet_id,
        kind=where.kind,
        path=ArtifactStore(settings.artifact_dir).relative(path),
        sha256=exported.sha256,
        size_bytes=exported.size_bytes,
    )


class ExportQueue:
    """The process's exports: asked for (coalesced per subnet, format and weights), worked in
    order by one daemon thread, remembered until the file exists (then the artifact row
    tells)."""

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

    def request(self, subnet_id: int, fmt: ExportFormat, weights: Weights) -> ExportTask:
        """Queue an export, or answer the one already queued or running for the same file."""
        key = (subnet_id, fmt, weights)
        with self._lock:
            task = self._tasks.get(key)
            if task is not None and task.state != "failed":
                return task
            pending = sum(t.state != "failed" for t in self._tasks.values())
            if pending >= self._max_pending:
                raise QueueFullError(
                    f"{pending} exports are already waiting in this process; try again shortly"
                )
            task = self._tasks[key] = ExportTask(subnet_id, fmt, weights)
            self._queue.put(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="exports", daemon=True)
                self._thread.start()
            return task

    def status(self, subnet_id: int, fmt: ExportFormat, weights: Weights) -> ExportTask | None:
        with self._lock:
            return self._tasks.get((subnet_id, fmt, weights))

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
                    subnet = store.get_subnet_row(session, key[0])
                    if existing_export(session, self._settings, subnet, *key[1:]) is None:
                        export_subnet(session, self._settings, *key)
            except ServiceError as exc:
                error = exc.detail
            except Exception as exc:  # the worker outlives any one export
                log.exception("export of subnet %d as %s (%s weights) failed", *key)
                error = f"export failed: {type(exc).__name__}"
            with self._lock:
                if error is None:
                    del self._tasks[key]  # the artifact row is the record from now on
                else:
                    task.state, task.error = "failed", error
                    task.finished_at = datetime.now(UTC)
