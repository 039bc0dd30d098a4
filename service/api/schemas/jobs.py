"""Bodies of the job endpoints: the spec a client submits, and what it reads back."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import search_spaces
from nas.data import DatasetSpec
from nas.hardware.device import NAME_PATTERN
from nas.training.config import TrainingConfig
from service.api.schemas.common import Line
from service.models import JobState
from workers.health import HealthCheck
from workers.spec import HealthSettings, SearchSettings, StageName, WorkerPlacement

DEFAULT_DEVICES = ["host-cpu-onnxruntime"]
#: float32 bytes of one input batch / of a generated dataset a job may ask for.
MAX_BATCH_BYTES = 2 * 2**30
MAX_DATASET_BYTES = 8 * 2**30
EXAMPLE: dict[str, Any] = {
    "name": "digits on bignas",
    "space": "bignas",
    "preset": "tiny",
    "dataset": {"kind": "digits"},
    "training": {"epochs": 10, "batch_size": 32, "sampler": "sandwich"},
    "search": {"budgets": {"host-cpu-onnxruntime": {"latency_ms": 5.0}}},
    "devices": ["host-cpu-onnxruntime", "host-cpu-torch"],
}


class JobCreate(BaseModel):
    """A search job: which space, on which data, trained how, searched how, for which devices.

    Checks that need the database or the data root (registered devices, ``dataset.root``) run
    when the job is submitted (``service.store.jobs.create_job``).
    """

    # The example doubles as the fuzzer's first (explicit) case: one submission that passes.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    name: Line = Field(min_length=1, max_length=100, description="For people; not unique.")
    space: str = Field(
        description="A registered search space (GET /api/v1/spaces).",
        json_schema_extra={"enum": search_spaces.names()},
    )
    preset: str = Field(default="tiny", description="A preset of the space.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    search: SearchSettings = Field(default_factory=SearchSettings)
    devices: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DEVICES),
        min_length=1,
        max_length=16,
        description="Device names (GET /api/v1/devices): a Pareto front for each.",
    )
    num_workers: int = Field(
        default=1, ge=1, le=64, description="Ray Train workers of the training stage."
    )
    placement: WorkerPlacement = Field(
        default_factory=WorkerPlacement,
        description="Where the training workers run on a Ray cluster: placement strategy and "
        "resources per worker (GPUs, custom node resources).",
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings,
        description="Health gates: how far above chance the trained supernet's largest and "
        "smallest subnets must be, how well the accuracy predictor must rank, and whether a "
        "miss fails the job or warns.",
    )

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: str) -> str:
        if space not in search_spaces.names():
            raise ValueError(
                f"unknown search space {space!r}; allowed values: {search_spaces.names()}"
            )
        return space

    @field_validator("devices")
    @classmethod
    def _device_names(cls, devices: list[str]) -> list[str]:
        for name in devices:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(
                    f"{name!r} is not a device name (lower-case letters, digits, '.', '_', '-')"
                )
        if len(set(devices)) != len(devices):
            raise ValueError("each device may appear once")
        return devices

    @model_validator(mode="after")
    def _preset_and_budgets(self) -> Self:
        allowed = search_spaces.presets(self.space)
        if self.preset not in allowed:
            raise ValueError(
                f"preset: {self.preset!r} is not a preset of {self.space!r}; "
                f"allowed values: {allowed}"
            )
        extra = sorted(set(self.search.budgets) - set(self.devices))
        if extra:
            raise ValueError(
                f"search.budgets: {extra} not in devices; allowed values: {self.devices}"
            )
        self._check_memory()
        return self

    def _check_memory(self) -> None:
        """Each field has its own bound, but their products do not: a batch of 65,536 images
        of 1,024 px, or a million synthetic ones, would exhaust a worker's memory. Bound the
        float32 bytes of one input batch and of a generated dataset."""
        data = self.dataset
        image = data.channels * data.resolution**2 * 4
        batch = self.training.batch_size * image
        if batch > MAX_BATCH_BYTES:
            largest = MAX_BATCH_BYTES // image
            raise ValueError(
                f"training.batch_size: {self.training.batch_size} images of {data.channels}x"
                f"{data.resolution}x{data.resolution} are {batch / 2**30:.1f} GiB per batch; "
                f"allowed values: <= {largest} at this resolution"
            )
        if data.num_samples is not None and data.num_samples * image > MAX_DATASET_BYTES:
            largest = MAX_DATASET_BYTES // image
            raise ValueError(
                f"dataset.num_samples: {data.num_samples} images of {data.channels}x"
                f"{data.resolution}x{data.resolution} are "
                f"{data.num_samples * image / 2**30:.1f} GiB; allowed values: <= {largest} "
                "at this resolution"
            )


class StagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: StageName
    state: Literal["running", "interrupted", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="Percent of this stage.")
    started_at: datetime
    finished_at: datetime | None


class HealthCheckPublic(HealthCheck):
    """A health check: the measured value against its threshold, and what to change."""

    model_config = ConfigDict(from_attributes=True)


class JobPublic(BaseModel):
    """A job as clients see it (no lease internals)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    owner: str
    space: str
    preset: str
    state: JobState
    stage: StageName | None = Field(description="The stage running now, or the last one.")
    progress: float = Field(description="Percent of the whole job.")
    error: str | None
    attempt: int = Field(description="1 on the first run; more after resumptions.")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    stages: list[StagePublic]
    health: list[HealthCheckPublic] = Field(
        description="Every health check run so far (after training, after building the "
        "predictor), passed or not."
    )
    warnings: list[HealthCheckPublic] = Field(
        description="Missed health checks that let the job go on: a job that succeeded with "
        "warnings may not be worth using. Checks that failed the job are in error."
    )
    spec: dict[str, Any] = Field(description="The submitted spec with every default filled.")


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="Jobs matching the filter, all pages together.")
    limit: int
    offset: int


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    attempt: int
    level: Literal["info", "warning", "error"]
    kind: Literal["state", "stage", "log", "metrics", "artifact"]
    stage: StageName | None
    message: str
    data: dict[str, Any] | None


class JobLogsPublic(BaseModel):
    data: list[JobEventPublic]
    next_after: int = Field(description="Pass as ?after= to read only newer lines.")
