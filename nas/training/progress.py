"""What the trainer reports while it runs (the service stores it, the CLI draws it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TrainingProgress:
    """One report: every ``log_every`` steps (``kind="step"``) and after every epoch."""

    kind: Literal["step", "epoch"]
    epoch: int
    step: int
    total_steps: int
    phase: str
    lr: float
    losses: dict[str, float]
    """Mean loss per subnet role ("max", "min", "random") since the last report."""
    samples_per_s: float
    max_val_acc: float | None = None
    min_val_acc: float | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    """Sampler metrics, e.g. the complexity-aware MACs walk of the epoch."""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


ProgressCallback = Callable[[TrainingProgress], None]
