"""What a running job reports to the controller: events with a sequence number, and an outcome.

The runner never touches the database (a Ray worker needs no database credentials); the
controller polls these events and records them. Sequence numbers let the controller take
exactly the events it has not recorded yet, even after it was restarted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.spec import StageName

ArtifactKind = Literal[
    "supernet_checkpoint",
    "accuracy_dataset",
    "predictor",
    "onnx",
    "torchscript",
    "pytorch_zip",
    "finetuned_weights",
]
LogLevel = Literal["info", "warning", "error"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1, description="1, 2, ... within one attempt.")
    at: datetime


class StageStarted(_Event):
    type: Literal["stage_started"] = "stage_started"
    stage: StageName


class StageFinished(_Event):
    type: Literal["stage_finished"] = "stage_finished"
    stage: StageName


class StageProgress(_Event):
    type: Literal["progress"] = "progress"
    stage: StageName
    fraction: float = Field(ge=0.0, le=1.0, description="Of this stage.")
    percent: float = Field(ge=0.0, le=100.0, description="Of the whole job.")


class LogLine(_Event):
    type: Literal["log"] = "log"
    stage: StageName | None = None
    level: LogLevel = "info"
    message: str


class Metrics(_Event):
    """A data point (e.g. one epoch's losses and accuracies), recorded once per ``key``: a
    resumed attempt that redoes an epoch replaces that epoch's point instead of adding one."""

    type: Literal["metrics"] = "metrics"
    stage: StageName
    key: str = Field(min_length=1, max_length=64)
    message: str
    data: dict[str, Any]


class ArtifactWritten(_Event):
    type: Literal["artifact"] = "artifact"
    stage: StageName
    kind: ArtifactKind
    path: str = Field(description="POSIX path relative to NAS_ARTIFACT_DIR.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    arch_id: str | None = Field(
        default=None, max_length=128, description="The subnet an exported file holds."
    )


class ResultsWritten(_Event):
    """The searching stage wrote the job's fronts and subnets (``workers.results.JobResults``);
    the controller reads the file and stores them."""

    type: Literal["results"] = "results"
    stage: StageName
    path: str = Field(description="POSIX path relative to NAS_ARTIFACT_DIR.")


RunnerEvent = Annotated[
    StageStarted
    | StageFinished
    | StageProgress
    | LogLine
    | Metrics
    | ArtifactWritten
    | ResultsWritten,
    Field(discriminator="type"),
]


class JobOutcome(BaseModel):
    """How an attempt ended: every stage ran, or one failed (and why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["succeeded", "failed"]
    error: str | None = None
    stage: StageName | None = Field(default=None, description="The stage that failed.")


class PollResult(BaseModel):
    """Answer to the controller's poll: events after its last recorded one, and the outcome
    once the runner has finished."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[RunnerEvent]
    outcome: JobOutcome | None = None
