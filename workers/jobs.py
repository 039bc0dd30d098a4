"""The job runner: a job's stages in order, one Ray actor per attempt.

``STAGES`` lists the stages that exist, in the order of ``workers.spec.STAGE_ORDER``; a stage
is a function of a ``StageContext`` and its share of the job's progress. A job whose stages
all ran has succeeded. Stages a previous attempt finished are skipped, and a stage that was
interrupted resumes from what it left on disk (training: its per-epoch checkpoint).

The runner reports through an ``EventLog`` that the controller polls (``JobActor.poll``);
it never writes to the database. Ray and torch are imported only where a stage needs them,
so the controller can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from workers.events import (
    ArtifactKind,
    ArtifactWritten,
    JobOutcome,
    LogLevel,
    LogLine,
    Metrics,
    PollResult,
    ResultsWritten,
    StageFinished,
    StageProgress,
    StageStarted,
)
from workers.health import HealthGateError, gate_training
from workers.spec import JobRequest, StageName
from workers.storage import ArtifactStore, StoreNotSharedError

log = logging.getLogger("workers.jobs")

#: Ray namespace of the job actors, so a restarted controller finds them by name.
RAY_NAMESPACE = "nas-service"
#: Every data point a job reported, one JSON object a line, in the job's directory.
METRICS_FILE = "metrics.jsonl"


class EventLog:
    """Events of one attempt, numbered 1, 2, ...; thread-safe. Events the controller has
    confirmed (by asking for those after them) are dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Any] = []
        self._seq = 0

    def add(self, event_type: type[Any], **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            self._events.append(event_type(seq=self._seq, at=datetime.now(UTC), **fields))

    def after(self, seq: int) -> list[Any]:
        with self._lock:
            self._events = [e for e in self._events if e.seq > seq]
            return list(self._events)


def _finite(value: Any) -> Any:
    """NaN and infinities (a diverged loss) as None: JSON columns cannot store them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StageContext:
    """What a stage gets: the request, its directory, and ways to report."""

    def __init__(
        self, request: JobRequest, stage: StageName, events: EventLog, span: tuple[float, float]
    ) -> None:
        self.request = request
        self.stage = stage
        self._events = events
        self._start, self._share = span

    @property
    def job_dir(self) -> Path:
        return self.request.job_dir

    def progress(self, fraction: float) -> None:
        """How far this stage is, 0..1; the job's percent follows from the stage weights."""
        fraction = min(max(fraction, 0.0), 1.0)
        percent = min(100.0, 100.0 * (self._start + self._share * fraction))
        self._events.add(StageProgress, stage=self.stage, fraction=fraction, percent=percent)

    def log(self, message: str, level: LogLevel = "info") -> None:
        self._events.add(LogLine, stage=self.stage, level=level, message=message)

    def metrics(self, key: str, message: str, data: dict[str, Any]) -> None:
        """A data point, recorded once per ``key`` (a redone epoch replaces its point).

        Also appended to the job's ``metrics.jsonl`` before it is reported: a checkpoint
        written after it can outlive the unread events of a killed attempt, and the next
        attempt replays the file, so no point is lost.
        """
        point = {"stage": self.stage, "key": key, "message": message, "data": _finite(data)}
        self.job_dir.mkdir(parents=True, exist_ok=True)
        with (self.job_dir / METRICS_FILE).open("a") as handle:
            handle.write(json.dumps(point) + "\n")
        self._events.add(Metrics, **point)

    def _relative(self, path: Path) -> str:
        return ArtifactStore(self.request.artifact_dir).relative(path)

    def artifact(self, kind: ArtifactKind, path: Path, *, arch_id: str | None = None) -> None:
        """Register a file this stage wrote under the artifact directory (``arch_id``: the
        subnet an exported file holds)."""
        path = path.resolve()
        self._events.add(
            ArtifactWritten,
            stage=self.stage,
            kind=kind,
            path=self._relative(path),
            sha256=_sha256(path),
            size_bytes=path.stat().st_size,
            arch_id=arch_id,
        )

    def results(self, path: Path) -> None:
        """Hand the controller the job's results file (``workers.results.JobResults``)."""
        self._events.add(ResultsWritten, stage=self.stage, path=self._relative(path))


def uses_ray_train(request: JobRequest) -> bool:
    """Train on Ray Train workers, or in the job's actor (one worker, no placement asked)."""
    return request.num_workers > 1 or request.placement.uses_ray_train


def run_training(ctx: StageContext) -> None:
    """Train the supernet (``workers.training``); resumes from the checkpoint in its directory."""
    from nas.training import CHECKPOINT_NAME
    from workers.training import TrainJob, train_distributed, train_local

    request = ctx.request
    job = TrainJob(
        space=request.space,
        preset=request.preset,
        dataset=request.dataset,
        training=request.training,
        output_dir=ctx.job_dir / "supernet",
        num_workers=request.num_workers,
        placement=request.placement,
    )
    checkpoint = job.output_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        ctx.log("resuming training from the last checkpoint")
    data = request.dataset
    workers = "auto" if data.num_workers is None else str(data.num_workers)
    ctx.metrics(
        key="training/data",
        message=f"data: {data.kind} at {data.resolution} px, train augmentation "
        f"{data.augmentation}, loader workers {workers}",
        data={
            "dataset": data.kind,
            "resolution": data.resolution,
            "channels": data.channels,
            "augmentation": data.augmentation,
            "num_workers": data.num_workers,
        },
    )

    def report(event: dict[str, Any]) -> None:
        ctx.progress(event["step"] / max(event["total_steps"], 1))
        if event["kind"] == "epoch":
            accuracy = event.get("max_val_acc")
            shown = f", max subnet {accuracy:.2f}%" if accuracy is not None else ""
            ctx.metrics(
                key=f"training/epoch/{event['epoch']}",
                message=f"epoch {event['epoch']} ({event['phase']}){shown}",
                data=event,
            )

    starts = 0

    def worker_started(event: dict[str, Any]) -> None:
        nonlocal starts
        if event["rank"] == 0:
            starts += 1
            if starts > 1:  # FailureConfig started the workers again: one of them failed
                epoch = event.get("resumed_from_epoch")
                where = f"the checkpoint of epoch {epoch}" if epoch else "the start (no checkpoint)"
                ctx.log(
                    f"training workers restarted after a worker failed (restart {starts - 1} of "
                    f"at most {job.max_failures}); resuming from {where}",
                    level="warning",
                )
        ctx.metrics(
            key=f"training/worker/{event['rank']}",
            message=f"training worker {event['rank'] + 1}/{event['world_size']} on Ray node "
            f"{event['node_id'][:12]} ({event['host']}, pid {event.get('pid')}, "
            f"{event['device']})",
            data=event,
        )

    if uses_ray_train(request):
        metrics = train_distributed(
            job, progress=report, data_root=request.data_root, on_worker=worker_started
        )
    else:
        metrics = train_local(job, progress=report, data_root=request.data_root)
    ctx.artifact("supernet_checkpoint", checkpoint)
    if metrics.get("max_val_acc") is not None:
        ctx.log(
            f"supernet trained: max subnet {metrics['max_val_acc']:.2f}%, "
            f"min subnet {metrics['min_val_acc']:.2f}%"
        )
    # A supernet at chance must not go on as a success (kept: the checkpoint and the log).
    losses = (metrics.get("losses") or {}).values()
    gate_training(ctx, diverged=any(not math.isfinite(loss) for loss in losses))


@dataclass(frozen=True)
class Stage:
    """One step of every job; ``weight`` is its share of the job's progress bar."""

    name: StageName
    weight: float
    run: Callable[[StageContext], None]


def _stages() -> tuple[Stage, ...]:
    from workers.finetuning import run_finetuning
    from workers.stages import run_building_predictor, run_exporting, run_searching

    # Weights: shares of a typical job's time (a tiny preset on a small dataset, 10 epochs).
    return (
        Stage("training", 0.60, run_training),
        Stage("building_predictor", 0.10, run_building_predictor),
        Stage("searching", 0.15, run_searching),
        Stage("finetuning", 0.10, run_finetuning),
        Stage("exporting", 0.05, run_exporting),
    )


#: Every stage of a job, in ``STAGE_ORDER``.
STAGES: tuple[Stage, ...] = _stages()


def replay_metrics(request: JobRequest, events: EventLog) -> None:
    """Report again the data points earlier attempts wrote (recorded once per key)."""
    path = request.job_dir / METRICS_FILE
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            point = json.loads(line)
            events.add(Metrics, **point)
        except (ValueError, TypeError):  # a line cut short by a killed attempt
            continue


#: Errors of a write the filesystem refused (rather than a bug or a bad input).
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def failure_reason(exc: BaseException, artifact_dir: Path) -> str:
    """The error a user reads when a stage fails. A refused write names its file where the
    error knows it; any failure while the artifact directory is full or read-only says so,
    because torch and the exporters report a full disk as a RuntimeError of their own."""
    if isinstance(exc, HealthGateError):  # already says what failed and what to change
        return str(exc)
    store = ArtifactStore(artifact_dir)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = "a file" if exc.filename is None else str(exc.filename)
        if exc.filename is not None:
            with contextlib.suppress(ValueError):  # a file outside the store: its full name
                where = store.relative(where)
        reason = f"could not write {where}: {exc.strerror}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    problem = store.write_problem()
    return reason if problem is None else f"{reason}; NAS_ARTIFACT_DIR {store.root} {problem}"


def run_job(request: JobRequest, events: EventLog) -> JobOutcome:
    """Run every stage not yet completed, in order; the first failure ends the attempt."""
    if request.store_id is not None:
        try:
            ArtifactStore(request.artifact_dir).check_marker(request.store_id)
        except StoreNotSharedError as exc:
            return JobOutcome(state="failed", error=str(exc))
    replay_metrics(request, events)
    total = sum(stage.weight for stage in STAGES)
    done = 0.0
    for stage in STAGES:
        share = stage.weight / total
        if stage.name in request.completed_stages:
            done += share
            continue
        ctx = StageContext(request, stage.name, events, (done, share))
        events.add(StageStarted, stage=stage.name)
        try:
            stage.run(ctx)
        except Exception as exc:
            log.exception("job %s: stage %s failed", request.job_id, stage.name)
            error = failure_reason(exc, request.artifact_dir)
            return JobOutcome(state="failed", error=error, stage=stage.name)
        ctx.progress(1.0)
        events.add(StageFinished, stage=stage.name)
        done += share
    return JobOutcome(state="succeeded")


class JobActor:
    """One attempt of one job, as a Ray actor: ``start`` runs the stages in a thread, ``poll``
    hands the controller the events after the last one it recorded, and the outcome once
    there is one. Killing the actor (``ray.kill``) stops the work, Ray Train workers included
    (they are owned by this actor and die with it)."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._request = JobRequest.model_validate(request)
        self._events = EventLog()
        self._outcome: JobOutcome | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> dict[str, Any]:
        """Start the stages (once; later calls only answer where the work runs)."""
        if self._thread is None:
            import ray

            host, pid = socket.gethostname(), os.getpid()
            node = ray.get_runtime_context().get_node_id()[:12]
            self._events.add(
                LogLine,
                message=f"attempt {self._request.attempt} running on {host} "
                f"(pid {pid}, Ray node {node})",
            )
            self._thread = threading.Thread(target=self._run, name="job-runner", daemon=True)
            self._thread.start()
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def _run(self) -> None:
        try:
            outcome = run_job(self._request, self._events)
        except BaseException as exc:  # the controller must always learn that it ended
            log.exception("job %s: runner crashed", self._request.job_id)
            outcome = JobOutcome(state="failed", error=f"{type(exc).__name__}: {exc}")
        self._outcome = outcome

    def poll(self, after_seq: int) -> dict[str, Any]:
        outcome = self._outcome  # read first: every event precedes the outcome
        result = PollResult(events=self._events.after(after_seq), outcome=outcome)
        return result.model_dump(mode="json")


@lru_cache(maxsize=1)
def job_actor_class() -> Any:
    """``JobActor`` as a Ray actor class (Ray imported on first use)."""
    import ray

    return ray.remote(JobActor)
