"""The validated description of a supernet training run (what a job spec and the CLI accept)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

SamplerName = Literal[
    "uniform", "sandwich", "complexity_aware", "attentive", "fair", "fair_distill"
]
ScheduleName = Literal["progressive_shrinking", "single_stage"]
PhaseName = Literal["full", "kernel", "depth", "expand"]
OptimizerName = Literal["sgd", "adamw"]

#: Once-for-All's order: each phase makes its own arch fields elastic, cumulatively.
PHASE_FIELDS: dict[str, tuple[str, ...]] = {
    "full": ("resolution",),
    "kernel": ("kernel",),
    "depth": ("depth",),
    "expand": ("expand", "width"),
}


class PhaseConfig(BaseModel):
    """One progressive-shrinking phase: its length and its peak learning rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PhaseName
    epochs: int = Field(ge=1, le=10_000)
    lr: float | None = Field(default=None, gt=0.0, description="None: the run's lr.")


class TrainingConfig(BaseModel):
    """Hyper-parameters of one supernet training run; ``None`` fields use the space's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=10, ge=1, le=10_000, description="Total epochs of all phases.")
    batch_size: int = Field(default=32, ge=2, le=65_536, description="Global batch size.")
    optimizer: OptimizerName = "sgd"
    lr: float = Field(default=0.2, gt=0.0, le=10.0, description="Peak learning rate.")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD (Nesterov) momentum.")
    weight_decay: float = Field(default=3e-5, ge=0.0, lt=1.0)
    warmup_epochs: float = Field(default=1.0, ge=0.0, description="Linear warmup per phase.")
    min_lr: float = Field(default=0.0, ge=0.0, description="End of the cosine decay.")
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(default=None, gt=0.0, description="Max gradient norm.")
    dropout: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Largest subnet only; None: the space's value."
    )
    drop_connect: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Stochastic depth, largest subnet only."
    )
    seed: int = Field(default=0, ge=0)
    bn_recalibration_batches: int = Field(default=10, ge=1, le=10_000)
    eval_every: int = Field(default=1, ge=1, description="Epochs between val evaluations.")
    sampler: SamplerName | None = None
    schedule: ScheduleName | None = None
    phases: list[PhaseConfig] | None = Field(
        default=None,
        description="progressive_shrinking only; None gives half of the epochs to the last "
        "phase (expand) and splits the rest evenly.",
    )
    num_random_subnets: int = Field(default=2, ge=0, le=16, description="Sandwich middle.")
    kd_temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    complexity_buckets: int = Field(default=8, ge=2, le=1000)
    complexity_max_step: float = Field(
        default=0.25, gt=0.0, le=1.0, description="Max MACs change per step, share of range."
    )
    complexity_tries: int = Field(default=64, ge=1, le=100_000)
    attentive_candidates: int = Field(
        default=3, ge=1, le=64, description="Archs scored per random subnet (AttentiveNAS k)."
    )
    attentive_mode: Literal["best", "worst"] = Field(
        default="best", description="BestUp (lowest minibatch loss) or WorstUp (highest)."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.complexity_max_step < 2.0 / self.complexity_buckets:
            raise ValueError(
                "complexity_max_step: must be >= 2 / complexity_buckets "
                f"({2.0 / self.complexity_buckets:.3f}) so that neighbouring buckets are reachable"
            )
        if self.phases is not None:
            if self.schedule == "single_stage":
                raise ValueError("phases: only used by schedule 'progressive_shrinking'")
            names = [p.name for p in self.phases]
            order = [n for n in PHASE_FIELDS if n in names]
            if names != order or not names:
                raise ValueError(f"phases: names must be unique, in order {list(PHASE_FIELDS)}")
            if sum(p.epochs for p in self.phases) != self.epochs:
                raise ValueError("phases: epochs must add up to epochs")
        return self
