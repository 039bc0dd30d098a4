"""Bodies of the job endpoints: the spec a client submits, and what it reads back."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import search_spaces
from nas.data import DatasetSpec
from nas.hardware.device import NAME_PATTERN
from nas.training import build_phases, default_recipe
from nas.training.config import PHASE_FIELDS, TrainingConfig
from service.api.schemas.common import Line
from service.api.schemas.json_types import check_json_types
from service.errors import InvalidFieldError, field_error, shown
from service.models import JobState
from service.store.documents import check_finite
from workers.health import HealthCheck
from workers.spec import (
    FinetuneSettings,
    HealthSettings,
    SearchSettings,
    StageName,
    WorkerPlacement,
)

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
#: What is checked of a submission that no JSON Schema can state, for the submit operation's
#: 422 description (schemathesis.toml accepts its 422 for schema-valid specs).
SUBMIT_CHECKS = (
    "each of `devices` is built in or registered, and a registered one has a latency table for "
    "the space and preset; each key of `search.budgets` is one of `devices`; `dataset.root` "
    "resolves inside NAS_DATA_ROOT and holds data of its kind (`fashion_mnist` without a root: "
    "the Debian package dataset-fashion-mnist is installed); the epochs of "
    "`training.phases` add up to `training.epochs`, which gives each phase of the schedule (the "
    "space's default unless named) an epoch; `training.complexity_max_step` is at least 2 / "
    "`training.complexity_buckets`; `finetune.grace_epochs` is at most `finetune.max_epochs`; "
    "one input batch is at most 2 GiB of float32, a synthetic dataset at most 8 GiB"
)
_NONE = {"type": "null"}
#: ``TrainingConfig._check`` on phases, in JSON Schema: none with schedule single_stage, else
#: a non-empty run of the phase names, each once and in PHASE_FIELDS' order (one shape for
#: each of the 15 runs). That the phases' epochs add up to ``epochs`` no JSON Schema can say.
_PHASE_RUNS = [
    [name for bit, name in enumerate(PHASE_FIELDS) if mask >> bit & 1]
    for mask in range(1, 2 ** len(PHASE_FIELDS))
]
_TRAINING_PHASES: dict[str, Any] = {
    "anyOf": [
        {
            "required": ["schedule"],
            "properties": {"schedule": {"const": "single_stage"}, "phases": _NONE},
        },
        {
            "properties": {
                "schedule": {"enum": ["progressive_shrinking", None]},
                "phases": {
                    "anyOf": [
                        _NONE,
                        *(
                            {
                                "type": "array",
                                "minItems": len(run),
                                "prefixItems": [
                                    {"properties": {"name": {"const": n}}} for n in run
                                ],
                                "items": False,
                            }
                            for run in _PHASE_RUNS
                        ),
                    ]
                },
            }
        },
    ]
}


def preset_of_space() -> dict[str, Any]:
    """JSON Schema of an object with a ``space`` and a ``preset`` of that space."""
    return {
        "anyOf": [
            {
                "properties": {
                    "space": {"const": name},
                    "preset": {"enum": search_spaces.presets(name)},
                }
            }
            for name in search_spaces.names()
        ]
    }


#: What the model checks across fields that JSON Schema can state too, for the OpenAPI schema:
#: the preset is one of the space's, and the training phases' names.
_ACROSS_FIELDS: list[dict[str, Any]] = [
    preset_of_space(),
    {"properties": {"training": _TRAINING_PHASES}},
]


class JobCreate(BaseModel):
    """A search job: which space, on which data, trained how, searched how, for which devices.

    Checks that need the database or the data root (registered devices, ``dataset.root`` and
    what it holds) run when the job is submitted (``service.store.jobs.create_job``, and
    ``nas.data.check_dataset_files`` from the submit route).
    """

    # The example doubles as the fuzzer's first (explicit) case: one submission that passes.
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [EXAMPLE], "allOf": _ACROSS_FIELDS}
    )

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
        # what _device_names checks, without changing its messages
        json_schema_extra={
            "uniqueItems": True,
            "items": {"type": "string", "pattern": NAME_PATTERN},
        },
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
    finetune: FinetuneSettings | None = Field(
        default_factory=FinetuneSettings,
        description="The finetuning stage, after the search: each device's best subnet within "
        "its budget and the next front members are trained on standalone from their "
        "inherited weights, recipes sampled by Optuna on Ray Tune and stopped early by ASHA "
        "(chosen on holdout, reported on val); null skips the stage.",
    )

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        return check_json_types(cls, data)

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
        for index, name in enumerate(devices):
            if not re.fullmatch(NAME_PATTERN, name):
                raise field_error(
                    (index,),
                    f"{shown(name)} is not a device name (lower-case letters, digits, '.', "
                    "'_', '-'; 1-64 characters)",
                )
            if name in devices[:index]:  # the list is at fault, not one of its items
                raise ValueError(f"{name!r} is listed twice; each device may appear once")
        return devices

    @model_validator(mode="after")
    def _check_across_fields(self) -> Self:
        self._check_finite()
        allowed = search_spaces.presets(self.space)
        if self.preset not in allowed:
            raise ValueError(
                f"preset: {self.preset!r} is not a preset of {self.space!r}; "
                f"allowed values: {allowed}"
            )
        for name in self.search.budgets:
            if name not in self.devices:
                raise field_error(
                    ("search", "budgets", name),
                    f"unknown device {shown(name)}; known devices: {self.devices} (the job's "
                    "devices: a budget is for one of them)",
                )
        self._check_epochs()
        self._check_memory()
        return self

    def _check_finite(self) -> None:
        """NaN and infinities that got past every field's bounds (``training.warmup_epochs``
        has none above): refused here, with the field and the value, before they reach the
        store's own check (``check_finite``), whose message cannot show the value."""
        document = self.model_dump()
        try:
            check_finite(document, ())
        except InvalidFieldError as exc:
            value: Any = document
            for key in exc.loc:
                value = value[key]
            raise field_error(exc.loc, f"{shown(value)} is not a finite number") from None

    def _check_epochs(self) -> None:
        """A schedule of phases (progressive shrinking: full, kernel, depth, expand) needs an
        epoch per phase; the space's default schedule is the one a job gets unless it names
        another, so ``ofa_mbv3`` with one epoch would pass here and fail when it starts."""
        space = search_spaces.get(self.space, preset=self.preset)
        schedule = self.training.schedule or default_recipe(space)[0]  # as the trainer picks
        try:
            build_phases(self.training, schedule)
        except ValueError as exc:
            whose = "" if self.training.schedule else f" (the default of space {self.space!r})"
            raise ValueError(
                f"training.epochs: schedule {schedule!r}{whose}: "
                f"{str(exc).removeprefix('epochs: ')}; give more epochs, or training.schedule "
                "'single_stage'"
            ) from None

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
