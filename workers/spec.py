"""What a job asks for, as the job runner receives it: pydantic models, no Ray.

The service validates a submitted spec against these same models (plus what only the service
knows: registered devices, the data root), so a spec that was accepted is a spec that runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.data import DatasetSpec
from nas.training.config import TrainingConfig

StageName = Literal["training", "building_predictor", "searching", "exporting"]
#: The order every job passes through; ``workers.jobs.STAGES`` holds the ones that exist.
STAGE_ORDER: tuple[StageName, ...] = ("training", "building_predictor", "searching", "exporting")

SearchStrategy = Literal["linas", "evolution", "nsga2", "optuna_nsga2", "random"]


class Budget(BaseModel):
    """The constraint of one device: a latency in milliseconds or a number of MACs, not both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float | None = Field(default=None, gt=0.0, le=1e6)
    macs: int | None = Field(default=None, gt=0, le=10**15)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.latency_ms is None) == (self.macs is None):
            raise ValueError("give exactly one of latency_ms or macs")
        return self


class SearchSettings(BaseModel):
    """How the search stage looks for subnets; every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: SearchStrategy = Field(
        default="linas",
        description="linas (predictor-driven NSGA-II, the default), evolution (constrained, "
        "one best subnet per budget), nsga2, optuna_nsga2 or random (the baseline).",
    )
    budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description="Per device name: the latency (ms) or MACs budget; a device without one "
        "gets a Pareto front only.",
    )
    population: int = Field(default=100, ge=4, le=10_000, description="Candidates per generation.")
    generations: int = Field(default=500, ge=1, le=10_000, description="Generations of evolution.")
    evaluations: int = Field(
        default=200,
        ge=10,
        le=100_000,
        description="Subnets evaluated on the holdout split (the predictor's training set).",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class JobRequest(BaseModel):
    """One attempt at one job, as the controller hands it to the runner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: int = Field(ge=1)
    attempt: int = Field(ge=1)
    space: str
    preset: str
    dataset: DatasetSpec
    training: TrainingConfig
    search: SearchSettings
    devices: list[str]
    num_workers: int = Field(ge=1)
    artifact_dir: Path = Field(description="Absolute NAS_ARTIFACT_DIR, shared with the workers.")
    data_root: Path = Field(description="Absolute NAS_DATA_ROOT, shared with the workers.")
    completed_stages: list[StageName] = Field(
        default_factory=list, description="Stages a previous attempt finished; skipped."
    )

    @property
    def job_dir(self) -> Path:
        return job_dir(self.artifact_dir, self.job_id)


def job_dir(artifact_dir: Path, job_id: int) -> Path:
    """Where a job's files live: ``NAS_ARTIFACT_DIR/jobs/<id>/``."""
    return artifact_dir / "jobs" / str(job_id)
