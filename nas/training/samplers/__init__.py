"""Subnet samplers behind one contract (``ArchSampler``) and the factory the trainer uses."""

from __future__ import annotations

from nas.training.config import SamplerName, TrainingConfig
from nas.training.samplers.attentive import AttentiveSampler
from nas.training.samplers.base import ArchSampler, Role, Scorer, Subnet
from nas.training.samplers.complexity_aware import ComplexityAwareSampler
from nas.training.samplers.fair import FairSampler
from nas.training.samplers.sandwich import SandwichSampler
from nas.training.samplers.uniform import UniformSampler

SAMPLERS: tuple[str, ...] = (
    "uniform",
    "sandwich",
    "complexity_aware",
    "attentive",
    "fair",
    "fair_distill",
)


def make_sampler(name: SamplerName, config: TrainingConfig) -> ArchSampler:
    """The sampler ``name`` with its hyper-parameters and seed taken from ``config``."""
    seed = config.seed
    if name == "uniform":
        return UniformSampler(seed=seed)
    if name == "sandwich":
        return SandwichSampler(seed=seed, num_random=config.num_random_subnets)
    if name == "complexity_aware":
        return ComplexityAwareSampler(
            seed=seed,
            num_random=config.num_random_subnets,
            buckets=config.complexity_buckets,
            max_step=config.complexity_max_step,
            tries=config.complexity_tries,
        )
    if name == "attentive":
        return AttentiveSampler(
            seed=seed,
            num_random=config.num_random_subnets,
            candidates=config.attentive_candidates,
            mode=config.attentive_mode,
        )
    if name in ("fair", "fair_distill"):
        return FairSampler(seed=seed, distill=name == "fair_distill")
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")


__all__ = [
    "SAMPLERS",
    "ArchSampler",
    "AttentiveSampler",
    "ComplexityAwareSampler",
    "FairSampler",
    "Role",
    "SandwichSampler",
    "Scorer",
    "Subnet",
    "UniformSampler",
    "make_sampler",
]
