"""Registered devices and the latency tables measured on them (a new upload is a new revision)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, UTCDateTime, utcnow
from service.models._sql import IDS_NEVER_REUSED, one_of

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
ACCELERATORS: tuple[str, ...] = ("cpu", "cuda")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")


class Device(Base):
    """A measurement setting (hardware + runtime + batch + threads + dtype) that users added;
    the built-in host devices are not stored."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    runtime: Mapped[str] = mapped_column(String(16))
    accelerator: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int]
    threads: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500), default="")
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tables: Mapped[list[LatencyTable]] = relationship(
        order_by="LatencyTable.id", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        one_of("runtime", RUNTIMES, "runtime"),
        one_of("accelerator", ACCELERATORS, "accelerator"),
        one_of("dtype", DTYPES, "dtype"),
        CheckConstraint("batch_size >= 1 AND threads >= 1", name="positive"),
        IDS_NEVER_REUSED,
    )


class LatencyTable(Base):
    """One uploaded latency table of a device for a (space, preset); re-profiling adds a
    revision, and the same file uploaded twice is stored once (unique sha256 per device)."""

    __tablename__ = "latency_tables"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    space: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int]
    format_version: Mapped[int]
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("revision >= 1", name="revision"),
        Unique("device_id", "space", "preset", "revision"),
        Unique("device_id", "sha256"),
        IDS_NEVER_REUSED,
    )
