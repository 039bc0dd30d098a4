"""How controllers claim, own and hand over running jobs.

A job is owned by the controller named in ``claimed_by`` while that controller keeps
``heartbeat_at`` fresh. Every change of owner is one conditional UPDATE that re-checks the
condition it relies on, so two controllers can never both win: claiming needs
``state = 'queued'`` (and on PostgreSQL the candidate row is locked with
``FOR UPDATE SKIP LOCKED``, so concurrent claimers pick different rows instead of queueing
behind one); taking over needs the lease to be released or expired; every write by an owner
needs ``claimed_by = me`` and the attempt it started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service.db import utcnow
from service.models import RUNNING_STATES, Job, JobEvent, JobStage


@dataclass(frozen=True)
class OwnedJob:
    """What a controller needs to run (or keep watching) a job it owns."""

    id: int
    attempt: int
    spec: dict[str, Any]
    completed_stages: list[str]
    event_seq: int
    ray_actor: str | None
    cancel_requested: bool


def _state_event(
    session: Session,
    job_id: int,
    attempt: int,
    message: str,
    *,
    level: str = "info",
    stage: str | None = None,
) -> None:
    """A controller's line in the job's log (in the caller's transaction)."""
    session.add(
        JobEvent(
            job_id=job_id, attempt=attempt, kind="state", level=level, stage=stage, message=message
        )
    )


def actor_name(job_id: int, attempt: int) -> str:
    """Ray actor of one attempt; named so that a new controller can find it again."""
    return f"nas-job-{job_id}-attempt-{attempt}"


def _owned(session: Session, job_id: int) -> OwnedJob:
    job = session.get_one(Job, job_id, populate_existing=True)
    completed = session.scalars(
        select(JobStage.name)
        .where(JobStage.job_id == job_id, JobStage.state == "succeeded")
        .order_by(JobStage.position)
    ).all()
    return OwnedJob(
        id=job.id,
        attempt=job.attempt,
        spec=job.spec,
        completed_stages=list(completed),
        event_seq=job.event_seq,
        ray_actor=job.ray_actor,
        cancel_requested=job.cancel_requested_at is not None,
    )


def claim_next(session: Session, owner: str, first_stage: str) -> OwnedJob | None:
    """Claim the oldest queued job for ``owner`` and start its next attempt; None if none.

    A resumed job goes back to the stage it was in; a new one starts at ``first_stage``.
    """
    with session.begin():
        for _ in range(8):  # a candidate taken by another controller is skipped
            candidate = session.execute(
                select(Job.id, Job.stage, Job.attempt)
                .where(Job.state == "queued")
                .order_by(Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if candidate is None:
                return None
            now = utcnow()
            attempt = candidate.attempt + 1
            claimed = session.execute(
                update(Job)
                .where(Job.id == candidate.id, Job.state == "queued")
                .values(
                    state=candidate.stage or first_stage,
                    claimed_by=owner,
                    heartbeat_at=now,
                    attempt=attempt,
                    event_seq=0,
                    ray_actor=actor_name(candidate.id, attempt),
                    started_at=func.coalesce(Job.started_at, now),
                )
            ).rowcount
            if claimed:
                _state_event(
                    session,
                    candidate.id,
                    attempt,
                    f"attempt {attempt} started by controller {owner}",
                )
                session.flush()
                return _owned(session, candidate.id)
        return None


def heartbeat(session: Session, owner: str) -> None:
    """Renew the lease on every running job of ``owner``."""
    with session.begin():
        session.execute(
            update(Job)
            .where(Job.claimed_by == owner, Job.state.in_(RUNNING_STATES))
            .values(heartbeat_at=utcnow())
        )


def cancel_requests(session: Session, owner: str) -> list[int]:
    """Running jobs of ``owner`` that a user asked to cancel."""
    with session.begin():
        return list(
            session.scalars(
                select(Job.id).where(
                    Job.claimed_by == owner,
                    Job.state.in_(RUNNING_STATES),
                    Job.cancel_requested_at.is_not(None),
                )
            ).all()
        )


def _close_running_stages(session: Session, job_id: int, state: str, now: datetime) -> None:
    session.execute(
        update(JobStage)
        .where(JobStage.job_id == job_id, JobStage.state == "running")
        .values(state=state, finished_at=now)
    )


def mark_cancelled(session: Session, job_id: int, owner: str) -> bool:
    """Record that ``owner`` stopped the Ray work of a job it was asked to cancel."""
    with session.begin():
        now = utcnow()
        attempt = session.scalar(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == owner, Job.state.in_(RUNNING_STATES))
            .values(state="cancelled", finished_at=now, claimed_by=None, heartbeat_at=None)
            .returning(Job.attempt)
        )
        if attempt is None:
            return False
        _close_running_stages(session, job_id, "cancelled", now)
        _state_event(session, job_id, attempt, "cancelled; Ray work stopped")
        return True


def finish(
    session: Session,
    job_id: int,
    owner: str,
    attempt: int,
    *,
    succeeded: bool,
    error: str | None = None,
    stage: str | None = None,
) -> bool:
    """Record the end of an attempt that ran to completion; False if the job is no longer
    ``owner``'s (it was cancelled or taken over meanwhile)."""
    with session.begin():
        now = utcnow()
        values: dict[str, Any] = {
            "state": "succeeded" if succeeded else "failed",
            "finished_at": now,
            "claimed_by": None,
            "heartbeat_at": None,
            "error": error,
        }
        if succeeded:
            values["progress"] = 100.0
        done = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.claimed_by == owner,
                Job.attempt == attempt,
                Job.state.in_(RUNNING_STATES),
            )
            .values(**values)
        ).rowcount
        if not done:
            return False
        _close_running_stages(session, job_id, "succeeded" if succeeded else "failed", now)
        started = session.scalar(select(Job.started_at).where(Job.id == job_id))
        took = f" in {(now - started).total_seconds():.1f} s" if started else ""
        message = f"succeeded{took}" if succeeded else f"failed in stage {stage}: {error}"
        level = "info" if succeeded else "error"
        _state_event(session, job_id, attempt, message, level=level, stage=stage)
        return True


def interrupted(
    session: Session, job_id: int, owner: str, *, reason: str, max_attempts: int
) -> str | None:
    """An attempt ``owner`` holds has lost its Ray work: queue the job again so that it
    resumes from its last checkpoint, or fail it once ``max_attempts`` were used. Returns
    the new state, or None if the job is not ``owner``'s any more."""
    with session.begin():
        job = session.scalars(
            select(Job)
            .where(Job.id == job_id, Job.claimed_by == owner, Job.state.in_(RUNNING_STATES))
            .with_for_update()
        ).one_or_none()
        if job is None:
            return None
        now = utcnow()
        attempt = job.attempt
        if attempt >= max_attempts:
            job.state, job.finished_at = "failed", now
            job.error = f"{reason}; gave up after {attempt} attempts (NAS_JOB_MAX_ATTEMPTS)"
            _close_running_stages(session, job_id, "failed", now)
            level, message = "error", job.error
        else:
            job.state = "queued"
            _close_running_stages(session, job_id, "interrupted", now)
            level = "warning"
            message = (
                f"{reason}; queued again to resume from its last checkpoint "
                f"(attempt {attempt + 1} of at most {max_attempts})"
            )
        job.claimed_by = job.heartbeat_at = job.ray_actor = None
        _state_event(session, job_id, attempt, message, level=level)
        return job.state


def release(session: Session, owner: str, job_ids: Sequence[int]) -> None:
    """A controller that stops hands its running jobs back: another (or the next start of
    this one) takes them over at once instead of waiting for the lease to expire."""
    with session.begin():
        released = session.execute(
            select(Job.id, Job.attempt).where(Job.id.in_(list(job_ids)), Job.claimed_by == owner)
        ).all()
        session.execute(
            update(Job)
            .where(Job.id.in_([job_id for job_id, _ in released]))
            .values(claimed_by=None, heartbeat_at=None)
        )
        for job_id, attempt in released:
            message = "controller stopped; the next controller takes the job over"
            _state_event(session, job_id, attempt, message)


def orphans(session: Session, lease_s: float) -> list[int]:
    """Running jobs that nobody owns: released, or whose owner stopped sending heartbeats."""
    cutoff = utcnow() - timedelta(seconds=lease_s)
    with session.begin():
        return list(
            session.scalars(
                select(Job.id)
                .where(
                    Job.state.in_(RUNNING_STATES),
                    or_(Job.claimed_by.is_(None), Job.heartbeat_at < cutoff),
                )
                .order_by(Job.id)
            ).all()
        )


def take_over(session: Session, job_id: int, owner: str, lease_s: float) -> OwnedJob | None:
    """Become the owner of an orphaned job (re-checking that it still is one)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=lease_s)
    with session.begin():
        taken = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state.in_(RUNNING_STATES),
                or_(Job.claimed_by.is_(None), Job.heartbeat_at < cutoff),
            )
            .values(claimed_by=owner, heartbeat_at=now)
        ).rowcount
        if not taken:
            return None
        return _owned(session, job_id)


def has_work(session: Session, lease_s: float) -> bool:
    """Whether a controller has anything to start or take over (it connects to Ray only then)."""
    cutoff = utcnow() - timedelta(seconds=lease_s)
    with session.begin():
        found = session.scalar(
            select(Job.id)
            .where(
                or_(
                    Job.state == "queued",
                    Job.state.in_(RUNNING_STATES)
                    & or_(Job.claimed_by.is_(None), Job.heartbeat_at < cutoff),
                )
            )
            .limit(1)
        )
        return found is not None


def state_of(session: Session, job_id: int) -> str | None:
    """The job's state, or None once it was deleted."""
    with session.begin():
        return session.scalar(select(Job.state).where(Job.id == job_id))


def note(session: Session, job_id: int, attempt: int, message: str) -> None:
    """A controller's line in the job's log, in a transaction of its own."""
    with session.begin():
        _state_event(session, job_id, attempt, message)
