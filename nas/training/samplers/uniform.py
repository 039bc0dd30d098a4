"""Uniform sampling: one random subnet per step, trained on labels (single-path one-shot)."""

from __future__ import annotations

from typing import Any

from nas.training.samplers.base import ArchSampler, Subnet


class UniformSampler(ArchSampler):
    """One subnet per step, each choice uniform (Guo et al., arXiv:1904.00420)."""

    name = "uniform"

    def plan(self, space: Any) -> list[Subnet]:
        return [Subnet("random", space.sample(self.rng, "random"))]
