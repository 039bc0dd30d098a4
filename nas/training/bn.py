"""BN recalibration and subnet evaluation from a supernet.

A subnet's activations differ from the supernet's mixture, so the shared running statistics
are wrong for it (Once-for-All, BigNAS): reset them and re-estimate them with a cumulative
average over a few training batches before every evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from nas.data import resize_batch
from nas.ops import DynamicBatchNorm2d

Batch = tuple[torch.Tensor, torch.Tensor]
_BN_TYPES = (DynamicBatchNorm2d, nn.modules.batchnorm._BatchNorm)


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 on a GPU (BN statistics stay float32 under autocast); plain float32 elsewhere."""
    return torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BN_TYPES)]


@torch.no_grad()
def recalibrate_bn(
    supernet: nn.Module, arch: Any, loader: Iterable[Batch], num_batches: int
) -> None:
    """Activate ``arch`` and recompute its BN running statistics over ``num_batches`` batches.

    Only BN layers run in training mode (dropout stays off); the model's mode is restored.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    supernet.set_active(arch)  # type: ignore[operator]
    norms = batch_norms(supernet)
    was_training = supernet.training
    momenta = [bn.momentum for bn in norms]
    supernet.eval()
    for bn in norms:
        bn.reset_running_stats()  # type: ignore[operator]
        bn.momentum = None  # cumulative average over the recalibration batches
        bn.train()
    device = next(supernet.parameters()).device
    try:
        for i, (images, _) in enumerate(loader):
            if i >= num_batches:
                break
            with _autocast(device):
                supernet(resize_batch(images.to(device), arch.resolution))
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        supernet.train(was_training)


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[Batch], resolution: int) -> float:
    """Top-1 accuracy in percent of ``model`` (eval mode) over ``batches``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for images, labels in batches:
        with _autocast(device):
            logits = model(resize_batch(images.to(device), resolution))
        correct += int((logits.argmax(1).cpu() == labels).sum())
        total += int(labels.numel())
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


def evaluate_subnet(
    supernet: nn.Module,
    arch: Any,
    *,
    calibration: Iterable[Batch],
    val: Iterable[Batch],
    num_batches: int,
) -> float:
    """Val top-1 (%) of ``arch`` run inside the supernet, after BN recalibration."""
    recalibrate_bn(supernet, arch, calibration, num_batches)
    return accuracy(supernet, val, arch.resolution)
