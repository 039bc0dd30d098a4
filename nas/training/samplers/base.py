"""The sampler contract: which subnets one optimizer step trains, and how they learn.

Samplers are small swappable strategies (as Optuna's are): the trainer owns the loop, a
sampler owns only the choice of archs and the randomness behind it.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Role = Literal["max", "min", "random"]
Scorer = Callable[[list[Any]], np.ndarray]
"""Minibatch loss of each arch (lower is better), the same on every data-parallel worker."""


@dataclass(frozen=True)
class Subnet:
    """One subnet of a step. ``role == "max"`` marks the teacher when the sampler distils."""

    role: Role
    arch: Any


class ArchSampler(abc.ABC):
    """Chooses the subnets of each training step.

    Contract: ``plan(space)`` is called exactly once per optimizer step, on every data-parallel
    worker in the same order, with the current phase's space; all randomness comes from the
    sampler's own generator, so equal seeds give equal plans on every worker.
    ``state_dict``/``load_state_dict`` round-trip everything ``plan`` depends on (exact resume);
    the state holds only plain types. Not thread-safe.

    ``distill``: the first subnet (``max``) learns from labels and the others from its detached
    soft logits (in-place distillation); otherwise every subnet learns from labels.
    ``wants_scores``: the trainer sets ``scorer`` (minibatch losses of candidate archs) before
    each ``plan``.
    """

    name: str
    distill: bool = False
    wants_scores: bool = False
    scorer: Scorer | None = None

    def __init__(self, *, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def plan(self, space: Any) -> list[Subnet]:
        """The subnets of the next step, in the order they run."""

    def metrics(self) -> dict[str, Any]:
        """What the sampler did since the last ``reset_metrics`` (plain types)."""
        return {}

    def reset_metrics(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Called by the trainer at the start of each epoch."""

    def state_dict(self) -> dict[str, Any]:
        # PCG64 states are 128-bit ints; JSON text survives ``torch.load(weights_only=True)``.
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])
