"""Optimizer construction: which parameters decay, and the two supported optimizers."""

from __future__ import annotations

import torch
from torch import nn

from nas.training.config import TrainingConfig


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed). BN weights and biases are scale/shift terms, and kernel
    transformation matrices start at the identity: weight decay would pull them to 0."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or "kernel_transforms" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainingConfig, lr: float) -> torch.optim.Optimizer:
    decay, no_decay = split_decay(model)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)
