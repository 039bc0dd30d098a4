"""Weight-sharing batch norm whose active width follows the input's channel count.

The active slice normalises with, and in training updates, the first C entries of the shared
statistics (Once-for-All, arXiv:1908.09791). Sub-network statistics drift from the supernet's,
so extracted models are usually BN-recalibrated: set ``momentum = None`` for a cumulative
average over the recalibration batches, exactly like ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops._checks import check_in_range, check_positive_int
from nas.ops.slicing import leading_slice


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm2d over the first ``x.size(1)`` features; attribute names match nn.BatchNorm2d.

    Deliberately not an ``nn.BatchNorm2d`` subclass: generic BN tooling (SyncBatchNorm
    conversion, conv-BN fusion) would otherwise silently replace or fuse it as a static BN.
    """

    def __init__(self, max_features: int, *, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.max_features = check_positive_int("max_features", max_features)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(max_features))
        self.bias = nn.Parameter(torch.zeros(max_features))
        self.register_buffer("running_mean", torch.zeros(max_features))
        self.register_buffer("running_var", torch.ones(max_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.running_mean: Tensor
        self.running_var: Tensor
        self.num_batches_tracked: Tensor

    def reset_running_stats(self) -> None:
        """Start recalibration from scratch (same semantics as nn.BatchNorm2d)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = x.size(1)
        if features > self.max_features:
            raise ValueError(
                f"input has {features} channels, more than max_features={self.max_features}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        weight: Tensor = self.weight
        bias: Tensor = self.bias
        mean, var = self.running_mean, self.running_var
        if features != self.max_features:
            weight, bias = leading_slice(weight, (features,)), leading_slice(bias, (features,))
            # Prefix slices of 1-D buffers are views: F.batch_norm's in-place update writes through.
            mean, var = mean[:features], var[:features]
        return F.batch_norm(x, mean, var, weight, bias, self.training, factor, self.eps)

    @torch.no_grad()
    def to_static(self, features: int) -> nn.BatchNorm2d:
        """Plain BatchNorm2d with copied affine parameters and running statistics."""
        check_in_range("features", features, self.max_features)
        bn = nn.BatchNorm2d(
            features,
            eps=self.eps,
            momentum=self.momentum,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        assert bn.running_mean is not None and bn.running_var is not None
        assert bn.num_batches_tracked is not None
        bn.weight.copy_(self.weight[:features])
        bn.bias.copy_(self.bias[:features])
        bn.running_mean.copy_(self.running_mean[:features])
        bn.running_var.copy_(self.running_var[:features])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.train(self.training)

    def extra_repr(self) -> str:
        return f"max_features={self.max_features}, eps={self.eps}, momentum={self.momentum}"
