"""The sandwich rule with in-place distillation (BigNAS, Yu et al., arXiv:2003.11142).

Each step trains the largest subnet on labels, then the smallest and ``num_random`` random
ones on the largest's soft predictions, all gradients summed into one optimizer step: the
extremes bound the performance of everything between them.
"""

from __future__ import annotations

from typing import Any

from nas.training.samplers.base import ArchSampler, Subnet


class SandwichSampler(ArchSampler):
    """max, min, then ``num_random`` random subnets; the max teaches the others."""

    name = "sandwich"
    distill = True

    def __init__(self, *, seed: int, num_random: int = 2) -> None:
        super().__init__(seed=seed)
        if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 0:
            raise ValueError(f"num_random must be a non-negative int, got {num_random!r}")
        self.num_random = num_random

    def plan(self, space: Any) -> list[Subnet]:
        return [
            Subnet("max", space.sample(self.rng, "max")),
            Subnet("min", space.sample(self.rng, "min")),
            *(Subnet("random", arch) for arch in self.random_archs(space, self.num_random)),
        ]

    def random_archs(self, space: Any, count: int) -> list[Any]:
        """The middle of the sandwich; subclasses change how it is drawn."""
        return [space.sample(self.rng, "random") for _ in range(count)]
