"""Weight-sharing linear layer (classifier heads) with elastic in/out width by slicing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops._checks import check_in_range, check_positive_int
from nas.ops.slicing import leading_slice


class DynamicLinear(nn.Module):
    """Linear over the first ``x.size(-1)`` inputs producing ``active_out_features`` outputs."""

    def __init__(self, *, max_in_features: int, max_out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.max_in_features = check_positive_int("max_in_features", max_in_features)
        self.max_out_features = check_positive_int("max_out_features", max_out_features)
        self.weight = nn.Parameter(torch.empty(max_out_features, max_in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default init
        self.bias: nn.Parameter | None
        if bias:
            bound = 1.0 / math.sqrt(max_in_features)
            self.bias = nn.Parameter(torch.empty(max_out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self._active_out_features = max_out_features

    @property
    def active_out_features(self) -> int:
        return self._active_out_features

    @active_out_features.setter
    def active_out_features(self, value: int) -> None:
        self._active_out_features = check_in_range(
            "active_out_features", value, self.max_out_features
        )

    def get_active_weight(self, out_features: int, in_features: int) -> Tensor:
        """Slice of the shared weight; the full parameter itself when maximal."""
        return leading_slice(self.weight, (out_features, in_features))

    def _active_bias(self, out_features: int) -> Tensor | None:
        return None if self.bias is None else leading_slice(self.bias, (out_features,))

    def forward(self, x: Tensor) -> Tensor:
        in_features = x.size(-1)
        if in_features > self.max_in_features:
            raise ValueError(
                f"input has {in_features} features, more than max_in_features="
                f"{self.max_in_features}"
            )
        out = self._active_out_features
        return F.linear(x, self.get_active_weight(out, in_features), self._active_bias(out))

    @torch.no_grad()
    def to_static(self, in_features: int) -> nn.Linear:
        """Plain linear layer with copied weights for the active out-features."""
        check_in_range("in_features", in_features, self.max_in_features)
        out = self._active_out_features
        weight = self.get_active_weight(out, in_features)
        linear = nn.Linear(
            in_features, out, bias=self.bias is not None, device=weight.device, dtype=weight.dtype
        )
        linear.weight.copy_(weight)
        bias = self._active_bias(out)
        if linear.bias is not None and bias is not None:
            linear.bias.copy_(bias)
        return linear.train(self.training)

    def extra_repr(self) -> str:
        return (
            f"max_in_features={self.max_in_features}, max_out_features={self.max_out_features}, "
            f"bias={self.bias is not None}"
        )
