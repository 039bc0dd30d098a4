"""The tables of the service (SQLAlchemy 2 ``Mapped`` models); importing this package registers
them all on ``service.db.Base.metadata``, which Alembic compares against the migrations."""

from __future__ import annotations

from service.models.devices import Device, LatencyTable
from service.models.jobs import (
    JOB_STATES,
    RUNNING_STATES,
    TERMINAL_STATES,
    Job,
    JobEvent,
    JobStage,
    JobState,
)
from service.models.results import Artifact, ParetoFront, ParetoMember, Subnet, SubnetLatency

__all__ = [
    "JOB_STATES",
    "RUNNING_STATES",
    "TERMINAL_STATES",
    "Artifact",
    "Device",
    "Job",
    "JobEvent",
    "JobStage",
    "JobState",
    "LatencyTable",
    "ParetoFront",
    "ParetoMember",
    "Subnet",
    "SubnetLatency",
]
