"""What a job produces: artifacts on disk, subnets, their latencies and Pareto fronts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Float, ForeignKey, Index, String
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow
from service.models._sql import IDS_NEVER_REUSED


class Artifact(Base):
    """A file a job wrote under NAS_ARTIFACT_DIR (supernet checkpoint, exported subnet, ...).

    ``path`` is relative to the artifact directory, so the directory can move; it is unique,
    so a file re-registered by a resumed attempt updates its row instead of adding one.
    """

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    subnet_id: Mapped[int | None] = mapped_column(ForeignKey("subnets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("size_bytes >= 0", name="size_bytes"),
        Index("ix_artifacts_job_id", "job_id"),
        IDS_NEVER_REUSED,
    )


class Subnet(Base):
    """One architecture a job evaluated, once per job (``arch_id`` is the space's canonical id)."""

    __tablename__ = "subnets"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    arch_id: Mapped[str] = mapped_column(String(128))
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolution: Mapped[int]
    macs: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    predicted_accuracy: Mapped[float | None] = mapped_column(Float)
    measured_accuracy: Mapped[float | None] = mapped_column(Float)
    #: Top-1 on val after the finetuning stage trained the subnet standalone (measured);
    #: a column of its own, so that it sorts and is checked like the other accuracies.
    finetuned_accuracy: Mapped[float | None] = mapped_column(Float)
    #: How it was had (``workers.results.FinetunedResult`` without ``accuracy``, which is
    #: the column above): holdout_accuracy, recipe, epochs, trials, stopped_early, weights.
    finetune: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("macs >= 0 AND params >= 0", name="complexity"),
        CheckConstraint("resolution > 0", name="resolution"),
        # NULL passes a CHECK, so "not measured yet" needs no special case.
        CheckConstraint("predicted_accuracy BETWEEN 0 AND 100", name="predicted_accuracy"),
        CheckConstraint("measured_accuracy BETWEEN 0 AND 100", name="measured_accuracy"),
        CheckConstraint("finetuned_accuracy BETWEEN 0 AND 100", name="finetuned_accuracy"),
        Unique("job_id", "arch_id"),
        IDS_NEVER_REUSED,
    )


class SubnetLatency(Base):
    """A subnet's latency on one device: predicted from the table, and measured where it was.

    ``device`` is a name, not a key into ``devices``: the built-in host devices have no row.
    """

    __tablename__ = "subnet_latencies"

    subnet_id: Mapped[int] = mapped_column(
        ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True
    )
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    predicted_ms: Mapped[float | None] = mapped_column(Float)
    measured_ms: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint("predicted_ms >= 0", name="predicted_ms"),
        CheckConstraint("measured_ms >= 0", name="measured_ms"),
    )


class ParetoFront(Base):
    """A job's front on one device: the objectives it trades off, and its hypervolume."""

    __tablename__ = "pareto_fronts"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    objectives: Mapped[list[str]] = mapped_column(JSON)
    hypervolume: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Unique("job_id", "device"), IDS_NEVER_REUSED)


class ParetoMember(Base):
    """A subnet on a front, at its position along it (ordered by the first objective)."""

    __tablename__ = "pareto_members"

    front_id: Mapped[int] = mapped_column(
        ForeignKey("pareto_fronts.id", ondelete="CASCADE"), primary_key=True
    )
    subnet_id: Mapped[int] = mapped_column(
        ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int]

    __table_args__ = (
        CheckConstraint("position >= 0", name="position"),
        Unique("front_id", "position"),
    )
