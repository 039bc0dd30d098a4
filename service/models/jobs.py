"""Jobs, the stages they pass through, and their event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, String, Text, and_
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from service.db import Base, UTCDateTime, utcnow
from service.models._sql import IDS_NEVER_REUSED, one_of
from workers.health import HEALTH_KEY_PREFIX, HealthCheck, reports_from_points
from workers.spec import STAGE_ORDER

JobState = Literal[
    "queued",
    "training",
    "building_predictor",
    "searching",
    "finetuning",
    "exporting",
    "succeeded",
    "failed",
    "cancelled",
]
JOB_STATES: tuple[str, ...] = get_args(JobState)
#: While a job runs, its state is the name of the stage it is in.
RUNNING_STATES: tuple[str, ...] = STAGE_ORDER
TERMINAL_STATES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
STAGE_STATES: tuple[str, ...] = ("running", "interrupted", "succeeded", "failed", "cancelled")
EVENT_KINDS: tuple[str, ...] = ("state", "stage", "log", "metrics", "artifact")
EVENT_LEVELS: tuple[str, ...] = ("info", "warning", "error")

_TERMINAL_SQL = ", ".join(f"'{state}'" for state in TERMINAL_STATES)


class Job(Base):
    """One search job: its spec as submitted, where it is, and who is running it.

    ``claimed_by`` and ``heartbeat_at`` form a lease: a controller owns a running job while it
    keeps the heartbeat fresh; a job whose lease lapsed is taken over (resumed) by another.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    space: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(24), default="queued")
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(default=0)
    ray_actor: Mapped[str | None] = mapped_column(String(128))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    event_seq: Mapped[int] = mapped_column(default=0)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    stages: Mapped[list[JobStage]] = relationship(
        back_populates="job",
        order_by="JobStage.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    #: The health gates' data points (``workers.health``): a job's health is read from its
    #: log, where a resumed attempt replaces a point instead of adding one.
    health_events: Mapped[list[JobEvent]] = relationship(
        primaryjoin=lambda: and_(
            Job.id == foreign(JobEvent.job_id),
            JobEvent.key.startswith(HEALTH_KEY_PREFIX, autoescape=True),
        ),
        viewonly=True,
        order_by=lambda: JobEvent.id,
    )

    @property
    def health(self) -> list[HealthCheck]:
        """Every health check run so far, passed or not, in gate order."""
        reports = reports_from_points([event.data for event in self.health_events])
        return [check for report in reports for check in report.checks]

    @property
    def warnings(self) -> list[HealthCheck]:
        """Missed checks that let the job go on (those that fail it are in ``error``)."""
        return [c for c in self.health if not c.passed and c.action == "warn"]

    __table_args__ = (
        one_of("state", JOB_STATES, "state"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
        CheckConstraint("attempt >= 0", name="attempt"),
        CheckConstraint(
            f"(state IN ({_TERMINAL_SQL})) = (finished_at IS NOT NULL)", name="finished_at"
        ),
        Unique("owner", "idempotency_key"),
        Index("ix_jobs_state_id", "state", "id"),
        IDS_NEVER_REUSED,
    )


class JobStage(Base):
    """When a stage of a job started and finished; a resumed stage keeps its first start."""

    __tablename__ = "job_stages"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    position: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="running")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="stages")

    __table_args__ = (
        one_of("name", STAGE_ORDER, "name"),
        one_of("state", STAGE_STATES, "state"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
        Unique("job_id", "name"),
        IDS_NEVER_REUSED,
    )


class JobEvent(Base):
    """One line of a job's log: a state change, a stage boundary, a message or a data point.

    ``key`` makes a data point idempotent (one row per ``(job, key)``), so an epoch that a
    resumed attempt trains again replaces its point instead of appearing twice.
    """

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="info")
    kind: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        one_of("level", EVENT_LEVELS, "level"),
        one_of("kind", EVENT_KINDS, "kind"),
        Unique("job_id", "key"),
        Index("ix_job_events_job_id_id", "job_id", "id"),
        IDS_NEVER_REUSED,
    )
