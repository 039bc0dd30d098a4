"""Recording what a job runner reports (``workers.events``) in the job's rows.

Called by the controller that owns the job; each batch is one transaction that also moves the
job's ``event_seq``, so a batch delivered twice (a poll answered again after a restart) is
recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import utcnow
from service.models import Artifact, Job, JobEvent, JobStage, Subnet
from service.store.results import ingest_results
from workers.events import (
    ArtifactWritten,
    LogLine,
    Metrics,
    ResultsWritten,
    RunnerEvent,
    StageFinished,
    StageProgress,
    StageStarted,
)
from workers.results import read_results
from workers.spec import STAGE_ORDER
from workers.storage import ArtifactStore


def _stage(session: Session, job_id: int, name: str) -> JobStage | None:
    return session.scalars(
        select(JobStage).where(JobStage.job_id == job_id, JobStage.name == name)
    ).one_or_none()


def _start_stage(session: Session, job: Job, event: StageStarted) -> None:
    stage = _stage(session, job.id, event.stage)
    if stage is None:
        session.add(
            JobStage(
                job_id=job.id,
                name=event.stage,
                position=STAGE_ORDER.index(event.stage),
                started_at=event.at,
            )
        )
        message = f"stage {event.stage} started"
    else:  # a resumed attempt: the stage keeps its first start time
        stage.state, stage.finished_at = "running", None
        message = f"stage {event.stage} resumed"
    job.state = job.stage = event.stage
    session.add(
        JobEvent(
            job_id=job.id, attempt=job.attempt, kind="stage", stage=event.stage, message=message
        )
    )


def _finish_stage(session: Session, job: Job, event: StageFinished) -> None:
    stage = _stage(session, job.id, event.stage)
    if stage is not None:
        stage.state, stage.finished_at, stage.progress = "succeeded", event.at, 100.0
    session.add(
        JobEvent(
            job_id=job.id,
            attempt=job.attempt,
            kind="stage",
            stage=event.stage,
            message=f"stage {event.stage} finished",
        )
    )


def _record_metrics(session: Session, job: Job, event: Metrics) -> None:
    # Replaced rather than updated, so that a client following the log by id sees it again.
    existing = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.key == event.key)
    ).one_or_none()
    if existing is not None:
        if existing.data == event.data:  # replayed by a later attempt: already recorded
            return
        session.delete(existing)
        session.flush()
    session.add(
        JobEvent(
            job_id=job.id,
            attempt=job.attempt,
            kind="metrics",
            stage=event.stage,
            message=event.message,
            data=event.data,
            key=event.key,
            created_at=event.at,
        )
    )


def _record_artifact(session: Session, job: Job, event: ArtifactWritten) -> None:
    artifact = session.scalars(select(Artifact).where(Artifact.path == event.path)).one_or_none()
    if artifact is None:
        artifact = Artifact(job_id=job.id, path=event.path)
        session.add(artifact)
    artifact.kind, artifact.sha256, artifact.size_bytes = event.kind, event.sha256, event.size_bytes
    artifact.created_at = event.at
    if event.arch_id is not None:  # an exported subnet: link it to the subnet's row
        artifact.subnet_id = session.scalars(
            select(Subnet.id).where(Subnet.job_id == job.id, Subnet.arch_id == event.arch_id)
        ).one_or_none()
    session.add(
        JobEvent(
            job_id=job.id,
            attempt=job.attempt,
            kind="artifact",
            stage=event.stage,
            message=f"{event.kind} written: {event.path} ({event.size_bytes} bytes)",
            data={
                "path": event.path,
                "sha256": event.sha256,
                "size_bytes": event.size_bytes,
                **({"arch_id": event.arch_id} if event.arch_id is not None else {}),
            },
        )
    )


def _record_results(
    session: Session, job: Job, event: ResultsWritten, artifact_dir: Path | None
) -> None:
    """Store the fronts and subnets of the file the searching stage announced; a file that
    cannot be read is logged as an error (the job's other records still count)."""
    if artifact_dir is None:
        raise ValueError("artifact_dir: required to record a results event")
    try:
        results = read_results(ArtifactStore(artifact_dir).path(event.path))
    except ValueError as exc:
        level, message = "error", f"results could not be recorded: {exc}"
    else:
        ingest_results(session, job.id, results)
        level = "info"
        message = (
            f"results recorded: {len(results.subnets)} subnets on {len(results.fronts)} fronts"
        )
    session.add(
        JobEvent(
            job_id=job.id,
            attempt=job.attempt,
            kind="log",
            level=level,
            stage=event.stage,
            message=message,
            data={"path": event.path},
            created_at=event.at,
        )
    )


def record_events(
    session: Session,
    job_id: int,
    owner: str,
    attempt: int,
    events: Sequence[RunnerEvent],
    *,
    artifact_dir: Path | None = None,
) -> int | None:
    """Apply the events of ``attempt`` that are newer than the job's ``event_seq``; returns the
    new ``event_seq``, or None if the job is no longer ``owner``'s attempt (then nothing is
    written). ``artifact_dir`` (NAS_ARTIFACT_DIR) is where results files are read from."""
    with session.begin():
        job = session.scalars(
            select(Job)
            .where(Job.id == job_id, Job.claimed_by == owner, Job.attempt == attempt)
            .with_for_update()
        ).one_or_none()
        if job is None or job.finished_at is not None:
            return None
        progress: StageProgress | None = None
        for event in sorted(events, key=lambda e: e.seq):
            if event.seq <= job.event_seq:
                continue
            if isinstance(event, StageStarted):
                _start_stage(session, job, event)
            elif isinstance(event, StageFinished):
                _finish_stage(session, job, event)
            elif isinstance(event, StageProgress):
                progress = event
            elif isinstance(event, Metrics):
                _record_metrics(session, job, event)
            elif isinstance(event, ArtifactWritten):
                _record_artifact(session, job, event)
            elif isinstance(event, ResultsWritten):
                _record_results(session, job, event, artifact_dir)
            elif isinstance(event, LogLine):
                session.add(
                    JobEvent(
                        job_id=job.id,
                        attempt=attempt,
                        kind="log",
                        level=event.level,
                        stage=event.stage,
                        message=event.message,
                        created_at=event.at,
                    )
                )
            job.event_seq = event.seq
        session.flush()
        if progress is not None:  # only the latest position matters
            job.progress = progress.percent
            stage = _stage(session, job.id, progress.stage)
            if stage is not None and stage.state == "running":
                stage.progress = round(progress.fraction * 100.0, 3)
        job.heartbeat_at = utcnow()
        return job.event_seq
