"""Weight-sharing dense and depthwise convolutions with elastic width and kernel size.

Each op stores the largest configuration and computes a smaller one by slicing its weight
(never masking), as in Once-for-All (arXiv:1908.09791) and BigNAS (arXiv:2003.11142).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops._checks import check_in_range, check_positive_int
from nas.ops.elastic_kernel import ElasticKernelConv
from nas.ops.slicing import leading_slice


class DynamicConv2d(ElasticKernelConv):
    """Dense conv; active in-channels follow the input, out-channels and kernel are attributes."""

    def __init__(
        self,
        *,
        max_in_channels: int,
        max_out_channels: int,
        kernel_sizes: int | Sequence[int],
        stride: int = 1,
        dilation: int = 1,
        bias: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        check_positive_int("max_in_channels", max_in_channels)
        check_positive_int("max_out_channels", max_out_channels)
        super().__init__(
            out_channels=max_out_channels,
            in_channels_per_group=max_in_channels,
            kernel_sizes=kernel_sizes,
            stride=stride,
            dilation=dilation,
            kernel_transform=kernel_transform,
        )
        self.max_in_channels = max_in_channels
        self.max_out_channels = max_out_channels
        self.bias: nn.Parameter | None
        if bias:
            bound = 1.0 / math.sqrt(max_in_channels * self.max_kernel_size**2)
            self.bias = nn.Parameter(torch.empty(max_out_channels).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self._active_out_channels = max_out_channels

    @property
    def active_out_channels(self) -> int:
        return self._active_out_channels

    @active_out_channels.setter
    def active_out_channels(self, value: int) -> None:
        self._active_out_channels = check_in_range(
            "active_out_channels", value, self.max_out_channels
        )

    def get_active_weight(self, out_channels: int, in_channels: int, kernel_size: int) -> Tensor:
        """Slice of the shared weight for a config; the full parameter itself when maximal."""
        return self.active_weight((out_channels, in_channels), kernel_size)

    def _active_bias(self, out_channels: int) -> Tensor | None:
        return None if self.bias is None else leading_slice(self.bias, (out_channels,))

    def forward(self, x: Tensor) -> Tensor:
        in_channels = x.size(1)
        if in_channels > self.max_in_channels:
            raise ValueError(
                f"input has {in_channels} channels, more than max_in_channels="
                f"{self.max_in_channels}"
            )
        out, k = self._active_out_channels, self._active_kernel_size
        return F.conv2d(
            x,
            self.get_active_weight(out, in_channels, k),
            self._active_bias(out),
            self.stride,
            self.padding_for(k),
            self.dilation,
        )

    @torch.no_grad()
    def to_static(self, in_channels: int) -> nn.Conv2d:
        """Plain conv with copied weights for the active out-channels and kernel size."""
        check_in_range("in_channels", in_channels, self.max_in_channels)
        out, k = self._active_out_channels, self._active_kernel_size
        weight = self.get_active_weight(out, in_channels, k)
        conv = nn.Conv2d(
            in_channels,
            out,
            k,
            stride=self.stride,
            padding=self.padding_for(k),
            dilation=self.dilation,
            bias=self.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(weight)
        bias = self._active_bias(out)
        if conv.bias is not None and bias is not None:
            conv.bias.copy_(bias)
        return conv.train(self.training)

    def extra_repr(self) -> str:
        return (
            f"max_in_channels={self.max_in_channels}, max_out_channels={self.max_out_channels}, "
            f"bias={self.bias is not None}, {super().extra_repr()}"
        )


class DynamicDepthwiseConv2d(ElasticKernelConv):
    """Depthwise conv; active channels follow the input, kernel size is an attribute."""

    def __init__(
        self,
        *,
        max_channels: int,
        kernel_sizes: int | Sequence[int],
        stride: int = 1,
        dilation: int = 1,
        kernel_transform: bool = False,
    ) -> None:
        check_positive_int("max_channels", max_channels)
        super().__init__(
            out_channels=max_channels,
            in_channels_per_group=1,
            kernel_sizes=kernel_sizes,
            stride=stride,
            dilation=dilation,
            kernel_transform=kernel_transform,
        )
        self.max_channels = max_channels

    def get_active_weight(self, channels: int, kernel_size: int) -> Tensor:
        """Slice of the shared weight; the full parameter itself when maximal."""
        return self.active_weight((channels,), kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.size(1)
        if channels > self.max_channels:
            raise ValueError(
                f"input has {channels} channels, more than max_channels={self.max_channels}"
            )
        k = self._active_kernel_size
        weight = self.get_active_weight(channels, k)
        return F.conv2d(x, weight, None, self.stride, self.padding_for(k), self.dilation, channels)

    @torch.no_grad()
    def to_static(self, channels: int) -> nn.Conv2d:
        """Plain depthwise conv with copied weights for the active kernel size."""
        check_in_range("channels", channels, self.max_channels)
        k = self._active_kernel_size
        weight = self.get_active_weight(channels, k)
        conv = nn.Conv2d(
            channels,
            channels,
            k,
            stride=self.stride,
            padding=self.padding_for(k),
            dilation=self.dilation,
            groups=channels,
            bias=False,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(weight)
        return conv.train(self.training)

    def extra_repr(self) -> str:
        return f"max_channels={self.max_channels}, {super().extra_repr()}"
