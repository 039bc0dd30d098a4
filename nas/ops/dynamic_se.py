"""Weight-sharing squeeze-excite whose width and bottleneck follow the input channels.

As in Once-for-All (arXiv:1908.09791) the bottleneck width is recomputed from the active
channel count, so both 1x1 convs are sliced on both dimensions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops._checks import check_in_range, check_positive_int
from nas.ops.activations import (
    ACTIVATION_NAMES,
    GATE_NAMES,
    ActivationName,
    GateName,
    make_activation,
    make_gate,
)
from nas.ops.rounding import make_divisible
from nas.ops.slicing import leading_slice
from nas.ops.static import SqueezeExcite


def _conv1x1_params(in_channels: int, out_channels: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Weight and bias initialised like nn.Conv2d's defaults, so SE starts out conventional."""
    weight = nn.init.kaiming_uniform_(torch.empty(out_channels, in_channels, 1, 1), a=math.sqrt(5))
    bound = 1.0 / math.sqrt(in_channels)
    return nn.Parameter(weight), nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))


class DynamicSE(nn.Module):
    """Squeeze-excite over the first ``x.size(1)`` channels."""

    def __init__(
        self,
        *,
        max_channels: int,
        reduction: int = 4,
        divisor: int = 8,
        gate: GateName = "hsigmoid",
        act: ActivationName = "relu",
    ) -> None:
        super().__init__()
        self.max_channels = check_positive_int("max_channels", max_channels)
        self.reduction = check_positive_int("reduction", reduction)
        self.divisor = check_positive_int("divisor", divisor)
        if gate not in GATE_NAMES:
            raise ValueError(f"gate must be one of {GATE_NAMES}, got {gate!r}")
        if act not in ACTIVATION_NAMES:
            raise ValueError(f"act must be one of {ACTIVATION_NAMES}, got {act!r}")
        self.gate_name: GateName = gate
        self.act_name: ActivationName = act
        self.act = make_activation(act)
        self.gate = make_gate(gate)
        # make_divisible is monotone, so every active mid width fits inside the max one.
        self.max_mid_channels = self.mid_channels(max_channels)
        mid = self.max_mid_channels
        self.reduce_weight, self.reduce_bias = _conv1x1_params(max_channels, mid)
        self.expand_weight, self.expand_bias = _conv1x1_params(mid, max_channels)

    def mid_channels(self, channels: int) -> int:
        """Bottleneck width for ``channels`` active channels."""
        return make_divisible(channels // self.reduction, self.divisor)

    def _active_params(self, channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if channels == self.max_channels:
            return self.reduce_weight, self.reduce_bias, self.expand_weight, self.expand_bias
        mid = self.mid_channels(channels)
        return (
            leading_slice(self.reduce_weight, (mid, channels)),
            leading_slice(self.reduce_bias, (mid,)),
            leading_slice(self.expand_weight, (channels, mid)),
            leading_slice(self.expand_bias, (channels,)),
        )

    def forward(self, x: Tensor) -> Tensor:
        channels = x.size(1)
        if channels > self.max_channels:
            raise ValueError(
                f"input has {channels} channels, more than max_channels={self.max_channels}"
            )
        w1, b1, w2, b2 = self._active_params(channels)
        scale = self.act(F.conv2d(x.mean((2, 3), keepdim=True), w1, b1))
        return x * self.gate(F.conv2d(scale, w2, b2))

    @torch.no_grad()
    def to_static(self, channels: int) -> SqueezeExcite:
        """Static squeeze-excite with copied weights for ``channels`` active channels."""
        check_in_range("channels", channels, self.max_channels)
        w1, b1, w2, b2 = self._active_params(channels)
        se = SqueezeExcite(
            channels=channels, mid_channels=w1.size(0), act=self.act_name, gate=self.gate_name
        ).to(device=w1.device, dtype=w1.dtype)
        assert se.reduce.bias is not None and se.expand.bias is not None
        se.reduce.weight.copy_(w1)
        se.reduce.bias.copy_(b1)
        se.expand.weight.copy_(w2)
        se.expand.bias.copy_(b2)
        return se.train(self.training)

    def extra_repr(self) -> str:
        return (
            f"max_channels={self.max_channels}, max_mid_channels={self.max_mid_channels}, "
            f"reduction={self.reduction}, divisor={self.divisor}"
        )
