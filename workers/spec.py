"""What a job asks for, as the job runner receives it: pydantic models, no Ray.

The service validates a submitted spec against these same models (plus what only the service
knows: registered devices, the data root), so a spec that was accepted is a spec that runs.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas.data import DatasetSpec
from nas.hardware.device import NAME_PATTERN
from nas.training.config import TrainingConfig

StageName = Literal["training", "building_predictor", "searching", "finetuning", "exporting"]
#: The order every job passes through; ``workers.jobs.STAGES`` holds the ones that exist.
STAGE_ORDER: tuple[StageName, ...] = (
    "training",
    "building_predictor",
    "searching",
    "finetuning",
    "exporting",
)

SearchStrategy = Literal["linas", "evolution", "nsga2", "optuna_nsga2", "random"]
PlacementStrategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]
HealthAction = Literal["fail", "warn"]

_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,63}")
_MAX_RESOURCE_KINDS = 16
_MAX_DEVICES = 16

#: "Exactly one of latency_ms or macs" in JSON Schema, for the OpenAPI schema of every model
#: that takes a budget: a client (or a fuzzer) built from the schema then sends one. The
#: models' validators say the same to Python callers.
EXACTLY_ONE_BUDGET: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["latency_ms"],
            "properties": {"latency_ms": {"type": "number"}, "macs": {"type": "null"}},
        },
        {
            "required": ["macs"],
            "properties": {"macs": {"type": "integer"}, "latency_ms": {"type": "null"}},
        },
    ]
}


class Budget(BaseModel):
    """The constraint of one device: a latency in milliseconds or a number of MACs, not both."""

    # NaN fails any bound with a misleading message ("<= 1000000"): refuse it as not finite.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=EXACTLY_ONE_BUDGET
    )

    latency_ms: float | None = Field(default=None, gt=0.0, le=1e6)
    macs: int | None = Field(default=None, gt=0, le=10**15)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if self.latency_ms is None and self.macs is None:
            raise ValueError("give exactly one of latency_ms or macs; got neither")
        if self.latency_ms is not None and self.macs is not None:
            raise ValueError(
                f"give exactly one of latency_ms or macs; got both (latency_ms {self.latency_ms}, "
                f"macs {self.macs})"
            )
        return self


class SearchSettings(BaseModel):
    """How the search stage looks for subnets; every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    strategy: SearchStrategy = Field(
        default="linas",
        description="linas (predictor-driven NSGA-II, the default), evolution (constrained, "
        "one best subnet per budget), nsga2, optuna_nsga2 or random (the baseline).",
    )
    budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description="Per device name: the latency (ms) or MACs budget; a device without one "
        "gets a Pareto front only.",
        # the keys are among the job's devices (checked with them): device names, 16 at most
        json_schema_extra={
            "propertyNames": {"pattern": NAME_PATTERN},
            "maxProperties": _MAX_DEVICES,
        },
    )
    population: int = Field(default=100, ge=4, le=10_000, description="Candidates per generation.")
    generations: int = Field(default=500, ge=1, le=10_000, description="Generations of evolution.")
    evaluations: int = Field(
        default=200,
        ge=10,
        le=100_000,
        description="Subnets evaluated on the holdout split (the predictor's training set).",
    )
    measure: int = Field(
        default=16,
        ge=2,
        le=1_000,
        description="Subnets per device measured on val (and timed whole on host devices) "
        "before the front is shown: the search's front (evenly thinned when larger than half "
        "of this) and its most accurate candidates within the budget. The shown front and "
        "the best pick are recomputed on these measurements.",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class FinetuneSettings(BaseModel):
    """Stage two: the chosen subnets fine-tuned standalone from their inherited weights, on
    Ray Tune. Optuna (Ray Tune's ``OptunaSearch``) samples each subnet's recipe, ASHA stops
    weak trials early on holdout accuracy, and the winner's val accuracy is what a user is
    shown: recipes are chosen on holdout and reported on val, so the figure is not the
    maximum of several draws on the split it is reported on."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    subnets: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Per device: its best subnet within the budget and the next front members "
        "within it, this many in all (each subnet once across devices).",
    )
    samples: int = Field(
        default=2, ge=1, le=100, description="Recipes Optuna tries per subnet (Tune trials)."
    )
    max_epochs: int = Field(
        default=2,
        ge=1,
        le=1_000,
        description="The most epochs of the train split one trial runs (the recipe's epochs "
        "are sampled up to it; ASHA's max_t).",
    )
    grace_epochs: int = Field(
        default=1, ge=1, le=1_000, description="Epochs every trial runs before ASHA may stop it."
    )
    distill: bool = Field(
        default=True,
        description="Distil from the supernet's largest subnet (the recipe's kd_weight is "
        "sampled in [0, 1]); false: plain cross-entropy (kd_weight 0).",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _grace_within_max(self) -> Self:
        if self.grace_epochs > self.max_epochs:
            raise ValueError(
                f"grace_epochs: {self.grace_epochs} is more than max_epochs {self.max_epochs}; "
                "a trial cannot run longer than max_epochs"
            )
        return self

    def changed(self, **changes: Any) -> FinetuneSettings:
        """These settings with ``changes`` (a None keeps the setting): what one subnet's
        fine-tuning on request runs with, the job's own settings as the defaults. A lower
        ``max_epochs`` lowers ``grace_epochs`` with it unless that is given too, so asking for
        fewer epochs alone is never refused. ``ValidationError`` names the field at fault."""
        given = {k: v for k, v in changes.items() if v is not None}
        merged = {**self.model_dump(), **given}
        if "grace_epochs" not in given and isinstance(merged["max_epochs"], int):
            merged["grace_epochs"] = min(self.grace_epochs, merged["max_epochs"])
        return FinetuneSettings.model_validate(merged)


class HealthSettings(BaseModel):
    """Health gates (``workers.health``): the least a trained supernet and a fitted predictor
    must reach for the job to go on as a success, and what a miss does. Accuracies are
    compared with chance for the job's dataset (100 / classes); a bound of 0 (or an RMSE of
    100) turns its check off."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_max_subnet_vs_chance: float = Field(
        default=2.0,
        ge=0.0,
        le=100.0,
        description="The largest subnet's val accuracy must reach this many times chance "
        "(2.0: 20% on 10 classes); with 2 classes capped so that it stays reachable (2.0: 75%, "
        "not 100%).",
    )
    min_min_subnet_vs_chance: float = Field(
        default=1.5,
        ge=0.0,
        le=100.0,
        description="The smallest subnet's val accuracy must reach this many times chance "
        "(1.5: 15% on 10 classes); capped like the largest subnet's.",
    )
    min_median_subnet_vs_chance: float = Field(
        default=1.5,
        ge=0.0,
        le=100.0,
        description="The subnets measured for the predictor (sampled across the space) must "
        "reach a median holdout accuracy of this many times chance; capped like the largest "
        "subnet's. A miss acts as on_predictor_failure says.",
    )
    min_predictor_tau: float = Field(
        default=0.2,
        ge=-1.0,
        le=1.0,
        description="Least Kendall tau of the accuracy predictor on its holdout subnets "
        "(how well it ranks them; 0 is no skill).",
    )
    max_predictor_rmse: float = Field(
        default=10.0,
        gt=0.0,
        le=100.0,
        description="Largest RMSE (accuracy points) of the predictor on its holdout subnets.",
    )
    on_training_failure: HealthAction = Field(
        default="fail",
        description="fail (the default: a supernet near chance ends the job right after "
        "training, its checkpoint and logs kept) or warn (go on; the job shows the warning).",
    )
    on_predictor_failure: HealthAction = Field(
        default="warn",
        description="warn (the default: the search measures its fronts anyway) or fail.",
    )


class WorkerPlacement(BaseModel):
    """Where the training stage's Ray Train workers run on a cluster: Ray's placement strategy
    and the resources each worker reserves. Passed to Ray as they are, so a custom resource a
    node was started with (``ray start --resources='{"big_node": 1}'``) pins workers to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    strategy: PlacementStrategy = Field(
        default="PACK",
        description="Ray's placement strategy for the workers: PACK (fewest nodes, the "
        "default), SPREAD (as many nodes as possible), STRICT_PACK (one node) or "
        "STRICT_SPREAD (one node per worker).",
    )
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict,
        description='Ray resources per worker, e.g. {"CPU": 4, "GPU": 1} or a custom node '
        "resource; CPU defaults to 1. With GPU every worker trains on its own GPU.",
        json_schema_extra={  # what _check_resources checks
            "propertyNames": {"pattern": f"^{_RESOURCE_NAME.pattern}$"},
            "maxProperties": _MAX_RESOURCE_KINDS,
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024},
        },
    )

    evaluator_gpus: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of a GPU each evaluator actor (BN recalibration + evaluation of "
        "subnets for the predictor and the search) reserves; unset = 0.25 when the cluster "
        "has GPUs, else 0 (CPU). 0 keeps evaluation on CPUs.",
    )

    @field_validator("resources_per_worker")
    @classmethod
    def _check_resources(cls, resources: dict[str, float]) -> dict[str, float]:
        if len(resources) > _MAX_RESOURCE_KINDS:
            raise ValueError(f"at most {_MAX_RESOURCE_KINDS} resource kinds; got {len(resources)}")
        for name, amount in resources.items():
            if not _RESOURCE_NAME.fullmatch(name):
                raise ValueError(
                    f"{reprlib.repr(name)} is not a Ray resource name (letters, digits, '_', "
                    "'.', ':', '/', '-'; 64 characters at most)"
                )
            if not 0 < amount <= 1024:
                raise ValueError(f"{name}: {amount} is not an amount in (0, 1024]")
        return resources

    @property
    def uses_ray_train(self) -> bool:
        """A placement was asked for: even one worker runs on Ray Train to get it."""
        return bool(self.resources_per_worker) or self.strategy != "PACK"


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
    placement: WorkerPlacement = Field(default_factory=WorkerPlacement)
    health: HealthSettings = Field(default_factory=HealthSettings)
    finetune: FinetuneSettings | None = Field(
        default_factory=FinetuneSettings, description="None: the finetuning stage is skipped."
    )
    artifact_dir: Path = Field(description="Absolute NAS_ARTIFACT_DIR, shared with the workers.")
    data_root: Path = Field(description="Absolute NAS_DATA_ROOT, shared with the workers.")
    completed_stages: list[StageName] = Field(
        default_factory=list, description="Stages a previous attempt finished; skipped."
    )
    store_id: str | None = Field(
        default=None,
        description="The artifact store's id (``workers.storage``): the runner checks that "
        "its node sees the controller's NAS_ARTIFACT_DIR before it starts.",
    )

    @property
    def job_dir(self) -> Path:
        return job_dir(self.artifact_dir, self.job_id)


def job_dir(artifact_dir: Path, job_id: int) -> Path:
    """Where a job's files live: ``NAS_ARTIFACT_DIR/jobs/<id>/``."""
    return artifact_dir / "jobs" / str(job_id)
