"""Fine-tuning one subnet on request: one bounded queue per API process, worked one subnet at a
time.

Fine-tuning a subnet (``workers.finetuning.finetune_arch``: Ray Tune trials training it from its
inherited weights) takes minutes, so ``POST /subnets/{id}/finetune`` only queues it and
answers at once, as exports do (``service.exports``). One daemon thread drains a queue of at
most ``MAX_PENDING`` tasks, so a flood of requests costs a 503, not a cluster's worth of
trials, and no request thread or database transaction waits on Ray Tune. A task is
remembered (state, progress, error, times) for the life of the process; once it succeeded, the
subnet's row and its ``finetuned_weights`` artifact are the record, as for the finetuning
stage's subnets, and ``results.json`` says the same.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError
from sqlalchemy.orm import Session

from nas.training.config import TrainingConfig
from service.api.schemas.finetunes import FinetuneTaskPublic
from service.api.schemas.results import DOWNLOAD_FORMATS, FinetunePublic
from service.dispatcher import connect_cluster
from service.errors import InvalidFieldError, ServiceError
from service.exports import (
    QueueFullError,
    check_trained,
    existing_file,
    inherited_exports_refiled,
    job_files,
)
from service.models import Artifact, Job, Subnet
from service.settings import Settings
from service.store import results_read as store
from service.store.results import set_finetuned
from workers.results import RESULTS_NAME, FinetunedResult, read_results, write_results
from workers.spec import FinetuneSettings, WorkerPlacement
from workers.storage import ArtifactStore
from workers.trained import JobFiles

log = logging.getLogger(__name__)

#: Fine-tunings waiting or running in one process; one more is a 503 with Retry-After.
MAX_PENDING = 4
#: How long closing the queue waits for a running fine-tuning's trials to stop.
CLOSE_WAIT_S = 60.0
WEIGHTS_KIND = DOWNLOAD_FORMATS["finetuned"].kind

TaskState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[TaskState, ...] = ("queued", "running")


@dataclass
class FinetuneTask:
    """One subnet's fine-tuning asked for: where it stands, how far, and why it failed."""

    subnet_id: int
    settings: FinetuneSettings
    state: TaskState = "queued"
    progress: float = 0.0
    error: str | None = None
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, reported: int, budget: int) -> None:
        """``finetune_arch``'s ``on_epoch``: trial epochs reported over all it may run."""
        self.progress = min(reported / budget, 1.0) if budget > 0 else 0.0


def requested_settings(job: Job, asked: dict[str, object]) -> FinetuneSettings:
    """The job's own fine-tuning settings (its spec's ``finetune``; the defaults where it has
    none) changed by the request's; a 422 naming the field they break together."""
    own = FinetuneSettings.model_validate(job.spec.get("finetune") or {})
    try:
        return own.changed(**asked)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidFieldError(("body", *error["loc"]), message) from None


def finished_weights(session: Session, settings: Settings, subnet: Subnet) -> Artifact | None:
    """The subnet's fine-tuned weights when it has its fine-tuned figures and the file is on
    disk (the finetuning stage's or a request's): then nothing is fine-tuned again."""
    if subnet.finetuned_accuracy is None:
        return None
    found = existing_file(session, settings, subnet.id, WEIGHTS_KIND)
    return None if found is None else found[0]


def _write_results(files: JobFiles, arch_id: str, result: FinetunedResult) -> None:
    """The job's ``results.json`` with the subnet's ``finetuned`` set, as the finetuning stage
    leaves it (a subnet only specialised is in the database alone: the file has none)."""
    path = files.job_dir / RESULTS_NAME
    if not path.is_file():
        return
    results = read_results(path)
    subnets = [
        s.model_copy(update={"finetuned": result}) if s.arch_id == arch_id else s
        for s in results.subnets
    ]
    write_results(results.model_copy(update={"subnets": subnets}), path)


def _record(
    session: Session, settings: Settings, files: JobFiles, subnet: Subnet, result: FinetunedResult
) -> None:
    """The subnet's fine-tuned figures on its row, with the exports it had refiled as its
    inherited ones (they were made before it was fine-tuned), and its weights as an
    artifact."""
    first = subnet.finetune is None
    set_finetuned(subnet, result)
    with inherited_exports_refiled(session, settings, subnet) if first else nullcontext():
        session.commit()
    weights = files.job_dir / result.weights
    with weights.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    store.record_artifact(
        session,
        job_id=subnet.job_id,
        subnet_id=subnet.id,
        kind=WEIGHTS_KIND,
        path=ArtifactStore(settings.artifact_dir).relative(weights),
        sha256=sha256,
        size_bytes=weights.stat().st_size,
    )


def run_finetune(settings: Settings, sessions: Callable[[], Session], task: FinetuneTask) -> None:
    """Fine-tune the task's subnet on Ray Tune and record it (files first, then rows); no
    transaction is open while the trials run. ``FinetuneStoppedError`` once ``task.stop``
    stopped them: nothing is recorded then."""
    with sessions() as session:
        subnet = store.get_subnet_row(session, task.subnet_id)
        job = check_trained(session, settings, subnet, "fine-tuned")
        files = job_files(settings, job)
        training = TrainingConfig.model_validate(job.spec["training"])
        placement = WorkerPlacement.model_validate(job.spec.get("placement") or {})
        arch, arch_id = dict(subnet.arch), subnet.arch_id
        session.rollback()

    from workers.finetuning import finetune_arch  # torch and Ray: only when one is run

    connect_cluster(settings)
    result = finetune_arch(
        files,
        arch,
        task.settings,
        training=training,
        gpus=placement.resources_per_worker.get("GPU", 0.0),
        log=lambda message: log.info("subnet %d: %s", task.subnet_id, message),
        on_epoch=task.report,
        should_stop=task.stop.is_set,
    )
    _write_results(files, arch_id, result)
    with sessions() as session:
        _record(session, settings, files, store.get_subnet_row(session, task.subnet_id), result)


class FinetuneQueue:
    """The process's fine-tunings: asked for (coalesced per subnet), worked in order by one
    daemon thread, cancelled on request; every task is remembered with its outcome."""

    def __init__(
        self, settings: Settings, sessions: Callable[[], Session], max_pending: int = MAX_PENDING
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._tasks: dict[int, FinetuneTask] = {}
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._thread: threading.Thread | None = None

    def request(self, subnet_id: int, settings: FinetuneSettings) -> FinetuneTask:
        """Queue the subnet's fine-tuning, or answer the one already queued or running (with
        the settings it was asked with)."""
        with self._lock:
            task = self._tasks.get(subnet_id)
            if task is not None and task.state in ACTIVE:
                return task
            pending = sum(t.state in ACTIVE for t in self._tasks.values())
            if pending >= self._max_pending:
                raise QueueFullError(
                    f"{pending} fine-tunings are already waiting or running in this process; "
                    "try again later"
                )
            task = self._tasks[subnet_id] = FinetuneTask(subnet_id, settings)
            self._queue.put(subnet_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="finetunes", daemon=True)
                self._thread.start()
            return task

    def status(self, subnet_id: int) -> FinetuneTask | None:
        with self._lock:
            return self._tasks.get(subnet_id)

    def position(self, task: FinetuneTask) -> int:
        """Fine-tunings ahead of this one (0 when it runs)."""
        with self._lock:
            ahead = [t for t in self._tasks.values() if t.state in ACTIVE]
            ahead.sort(key=lambda t: t.requested_at)
            return next((i for i, t in enumerate(ahead) if t is task), 0)

    def cancel(self, subnet_id: int) -> FinetuneTask | None:
        """Cancel the subnet's queued task at once, or ask its running trials to stop (the
        task reads ``cancelled`` once they have); None when none is queued or running."""
        with self._lock:
            task = self._tasks.get(subnet_id)
            if task is None or task.state not in ACTIVE:
                return None
            task.stop.set()
            if task.state == "queued":
                task.state, task.finished_at = "cancelled", datetime.now(UTC)
            return task

    def close(self) -> None:
        """Stop every task (the app is shutting down) and wait a while for running trials."""
        with self._lock:
            active = [t.subnet_id for t in self._tasks.values() if t.state in ACTIVE]
            thread, self._thread = self._thread, None
        for subnet_id in active:
            self.cancel(subnet_id)
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=CLOSE_WAIT_S)

    def _work(self) -> None:
        from workers.finetuning import FinetuneStoppedError

        while True:
            subnet_id = self._queue.get()
            if subnet_id is None:
                return
            with self._lock:
                task = self._tasks[subnet_id]
                if task.state != "queued":  # cancelled while it waited
                    continue
                task.state, task.started_at = "running", datetime.now(UTC)
            state: TaskState = "failed"
            error = None
            try:
                run_finetune(self._settings, self._sessions, task)
                state = "succeeded"
            except FinetuneStoppedError:
                state = "cancelled"
            except ServiceError as exc:
                error = exc.detail
            except Exception as exc:  # the worker outlives any one fine-tuning
                log.exception("fine-tuning subnet %d failed", subnet_id)
                error = f"fine-tuning failed: {type(exc).__name__} (the service log says more)"
            with self._lock:
                task.state, task.error = state, error
                task.finished_at = datetime.now(UTC)
                if state == "succeeded":
                    task.progress = 1.0


def finetune_public(
    session: Session, settings: Settings, finetunes: FinetuneQueue, subnet: Subnet
) -> FinetuneTaskPublic:
    """Where the subnet's fine-tuning stands: its task in this process while one is queued,
    running or ended without a record; else its record (the finetuning stage's, or a
    request's) with both accuracies; else ``not_requested``."""
    task = finetunes.status(subnet.id)
    weights = finished_weights(session, settings, subnet)
    if weights is None or (task is not None and task.state in ACTIVE):
        if task is None:
            return FinetuneTaskPublic(subnet_id=subnet.id, state="not_requested", progress=0.0)
        return FinetuneTaskPublic(
            subnet_id=subnet.id,
            state=task.state,
            progress=task.progress,
            position=finetunes.position(task) if task.state == "queued" else None,
            cancel_requested=task.stop.is_set(),
            error=task.error,
            settings=task.settings,
            requested_at=task.requested_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
        )
    asked = task if task is not None and task.state == "succeeded" else None
    figures = None if subnet.finetune is None else FinetunePublic.model_validate(subnet.finetune)
    return FinetuneTaskPublic(
        subnet_id=subnet.id,
        state="succeeded",
        progress=1.0,
        settings=None if asked is None else asked.settings,
        inherited_accuracy=subnet.measured_accuracy,
        finetuned_accuracy=subnet.finetuned_accuracy,
        measured_on="val",
        finetune=figures,
        download_url=f"/api/v1/subnets/{subnet.id}/download?format=finetuned",
        requested_at=None if asked is None else asked.requested_at,
        started_at=None if asked is None else asked.started_at,
        finished_at=weights.created_at if asked is None else asked.finished_at,
    )
