"""Block specs: the concrete layers of a subnet, and their analytic cost.

A ``BlockSpec`` is what latency lookup tables key on and what MACs/params are counted from, so
"what this subnet is" has one source of truth. The cost functions are plain arithmetic: they
take Python ints (one block) or numpy int arrays (a batch of archs) alike.

Convention (thop / Once-for-All ``count_net_flops``): MACs count the multiply-accumulates of
convolutions and linear layers only; batch norm, activations, pooling, the squeeze-excite
rescale and residual additions are free. Params count every parameter of the static model,
BN affine weights included (running statistics are buffers, not parameters).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

#: One block's figure (Python int) or a batch's (numpy int array); the arithmetic is the same.
Int = int | np.ndarray


class BlockSpec(NamedTuple):
    """One layer (or MBConv block) of a concrete subnet; hashable and cheap to build.

    ``op`` is one of ``"conv"`` (dense kxk conv, optionally followed by BN and ``act``),
    ``"mbconv"`` (1x1 expand -> BN -> act -> depthwise kxk -> BN -> act -> optional
    squeeze-excite -> 1x1 project -> BN, plus a residual when ``residual``), ``"pool"`` (global
    average pool) and ``"linear"``. ``input_size`` is the input's height (= width).

    Cell-based spaces (NASNet) add pre-activation layers, where ``act`` comes *before* the
    convs: ``"relu_conv_bn"`` (kxk conv -> BN), ``"relu_dil_conv_bn"`` (kxk conv with
    dilation 2 -> BN), ``"relu_fac_conv_bn"`` (1xk conv strided along the width -> kx1 conv
    strided along the height -> BN), ``"sep_conv_stack"`` (depthwise kxk -> pointwise -> BN,
    twice, the first strided, ``act`` before each); ``"factorized_reduce"`` (``act``, then two
    1x1/2 convs on grids offset by one pixel, each to half the outputs, concatenated -> BN);
    ``"avg_pool"`` / ``"max_pool"`` (local kxk pooling with 'same' padding) and
    ``"conv_valid"`` (a ``"conv"`` without padding).
    """

    op: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    input_size: int
    expand: float = 0.0
    mid_channels: int = 0
    se: bool = False
    se_channels: int = 0
    act: str = "identity"
    bn: bool = False
    bias: bool = False
    residual: bool = False

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @property
    def key(self) -> str:
        """Stable string key for latency lookup tables."""
        parts = [
            self.op,
            f"in{self.in_channels}",
            f"out{self.out_channels}",
            f"k{self.kernel}",
            f"s{self.stride}",
            f"hw{self.input_size}",
        ]
        if self.op == "mbconv":
            parts += [f"e{self.expand:g}", f"mid{self.mid_channels}"]
            parts += [f"se{self.se_channels}"] if self.se else []
            parts += ["res"] if self.residual else []
        parts += [self.act] if self.act != "identity" else []
        parts += ["bn"] if self.bn else []
        parts += ["bias"] if self.bias else []
        return "-".join(parts)


def conv_output_size(size: Int, kernel: Int, stride: Int) -> Int:
    """Output side of a conv with 'same' padding ``kernel // 2`` (all convs here use it)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def conv_cost(
    in_channels: Int,
    out_channels: Int,
    kernel: Int,
    stride: Int,
    input_size: Int,
    bn: bool,
    bias: bool,
) -> tuple[Int, Int]:
    """(MACs, params) of a dense conv, plus its BN's affine parameters when ``bn``."""
    out_size = conv_output_size(input_size, kernel, stride)
    weights = in_channels * out_channels * kernel * kernel
    params = weights + bias * out_channels + bn * 2 * out_channels
    return out_size * out_size * weights, params


def linear_cost(in_features: Int, out_features: Int, bias: bool) -> tuple[Int, Int]:
    return in_features * out_features, in_features * out_features + bias * out_features


def mbconv_cost(
    in_channels: Int,
    out_channels: Int,
    mid_channels: Int,
    kernel: Int,
    stride: Int,
    input_size: Int,
    se_channels: Int,
    has_expand: Int,
) -> tuple[Int, Int]:
    """(MACs, params) of an MBConv block; ``has_expand`` is 0 when expand ratio is 1.

    The squeeze-excite convs run on the pooled 1x1 map and have biases.
    """
    out_size = conv_output_size(input_size, kernel, stride)
    expand_macs = has_expand * input_size * input_size * in_channels * mid_channels
    expand_params = has_expand * (in_channels * mid_channels + 2 * mid_channels)
    dw_macs = out_size * out_size * mid_channels * kernel * kernel
    dw_params = mid_channels * kernel * kernel + 2 * mid_channels
    se_macs = 2 * mid_channels * se_channels
    se_params = se_macs + (se_channels > 0) * (se_channels + mid_channels)
    project_macs = out_size * out_size * mid_channels * out_channels
    project_params = mid_channels * out_channels + 2 * out_channels
    macs = expand_macs + dw_macs + se_macs + project_macs
    return macs, expand_params + dw_params + se_params + project_params


def valid_conv_cost(
    in_channels: Int, out_channels: Int, kernel: Int, stride: Int, input_size: Int, bn: bool
) -> tuple[Int, Int]:
    """(MACs, params) of a dense conv without padding (NASNet's ImageNet stem)."""
    out_size = (input_size - kernel) // stride + 1
    weights = in_channels * out_channels * kernel * kernel
    return out_size * out_size * weights, weights + bn * 2 * out_channels


def factorized_conv_cost(
    in_channels: Int, out_channels: Int, kernel: Int, stride: Int, input_size: Int
) -> tuple[Int, Int]:
    """(MACs, params) of a 1xk conv (strided along the width), a kx1 conv, then BN."""
    out_size = conv_output_size(input_size, kernel, stride)
    first = in_channels * out_channels * kernel
    second = out_channels * out_channels * kernel
    macs = input_size * out_size * first + out_size * out_size * second
    return macs, first + second + 2 * out_channels


def separable_stack_cost(
    in_channels: Int, out_channels: Int, kernel: Int, stride: Int, input_size: Int
) -> tuple[Int, Int]:
    """(MACs, params) of two (depthwise kxk, pointwise, BN) layers, the first strided."""
    out_size = conv_output_size(input_size, kernel, stride)
    first = in_channels * kernel * kernel + in_channels * out_channels
    second = out_channels * kernel * kernel + out_channels * out_channels
    return out_size * out_size * (first + second), first + second + 4 * out_channels


def factorized_reduce_cost(in_channels: Int, out_channels: Int, input_size: Int) -> tuple[Int, Int]:
    """(MACs, params) of two 1x1/2 convs (half the outputs each), concatenated, then BN."""
    out_size = conv_output_size(input_size, 1, 2)
    weights = in_channels * out_channels
    return out_size * out_size * weights, weights + 2 * out_channels


#: Every ``BlockSpec.op`` that ``block_cost`` knows.
BLOCK_OPS = (
    "conv",
    "mbconv",
    "linear",
    "pool",
    "conv_valid",
    "relu_conv_bn",
    "relu_dil_conv_bn",
    "relu_fac_conv_bn",
    "sep_conv_stack",
    "factorized_reduce",
    "avg_pool",
    "max_pool",
)


def block_cost(spec: BlockSpec) -> tuple[Int, Int]:
    """(MACs, params) of one block spec (Python ints for a spec of Python ints)."""
    op = spec.op
    if op == "mbconv":
        return mbconv_cost(
            spec.in_channels,
            spec.out_channels,
            spec.mid_channels,
            spec.kernel,
            spec.stride,
            spec.input_size,
            spec.se_channels,
            int(spec.expand != 1),
        )
    if op == "conv":
        return conv_cost(
            spec.in_channels,
            spec.out_channels,
            spec.kernel,
            spec.stride,
            spec.input_size,
            spec.bn,
            spec.bias,
        )
    if op == "linear":
        return linear_cost(spec.in_channels, spec.out_channels, spec.bias)
    if op in ("pool", "avg_pool", "max_pool"):
        return 0, 0
    shape = (spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.input_size)
    if op in ("relu_conv_bn", "relu_dil_conv_bn"):  # dilation keeps the 'same' output size
        return conv_cost(*shape, spec.bn, spec.bias)
    if op == "conv_valid":
        return valid_conv_cost(*shape, spec.bn)
    if op == "relu_fac_conv_bn":
        return factorized_conv_cost(*shape)
    if op == "sep_conv_stack":
        return separable_stack_cost(*shape)
    if op == "factorized_reduce":
        return factorized_reduce_cost(spec.in_channels, spec.out_channels, spec.input_size)
    raise ValueError(f"op must be one of {BLOCK_OPS}, got {op!r}")
