"""Supernet training: sandwich rule, in-place distillation, complexity-aware and attentive sampling.

``SupernetTrainer(space, data, TrainingConfig(...)).fit()`` trains a space's supernet with
one of the samplers (``samplers``) under progressive shrinking (Once-for-All,
arXiv:1908.09791) or single-stage training (BigNAS, arXiv:2003.11142); every evaluation of a
subnet recalibrates its BN statistics first (``recalibrate_bn``). Takes a search-space object;
never imports ``search_spaces``, ``workers`` or ``service``.
"""

from __future__ import annotations

from nas.training.bn import accuracy, evaluate_subnet, recalibrate_bn
from nas.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from nas.training.config import PhaseConfig, TrainingConfig
from nas.training.losses import distillation_loss
from nas.training.progress import ProgressCallback, TrainingProgress
from nas.training.samplers import (
    SAMPLERS,
    ArchSampler,
    AttentiveSampler,
    ComplexityAwareSampler,
    SandwichSampler,
    Subnet,
    UniformSampler,
    make_sampler,
)
from nas.training.schedules import Phase, ShrunkSpace, build_phases
from nas.training.trainer import (
    SubnetLoss,
    SupernetTrainer,
    TrainingResult,
    default_recipe,
)

__all__ = [
    "CHECKPOINT_NAME",
    "SAMPLERS",
    "ArchSampler",
    "AttentiveSampler",
    "ComplexityAwareSampler",
    "Phase",
    "PhaseConfig",
    "ProgressCallback",
    "SandwichSampler",
    "ShrunkSpace",
    "Subnet",
    "SubnetLoss",
    "SupernetTrainer",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "UniformSampler",
    "accuracy",
    "build_phases",
    "default_recipe",
    "distillation_loss",
    "evaluate_subnet",
    "load_checkpoint",
    "make_sampler",
    "recalibrate_bn",
    "save_checkpoint",
]
