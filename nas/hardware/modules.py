"""A plain torch module for one ``BlockSpec``, built the way extraction builds that layer.

A latency table is only as good as the resemblance between the block measured alone and the
block inside an extracted subnet, so MBConv blocks come from ``DynamicMBConv.to_static`` and
NASNet ops from the one-shot ops' ``to_static`` (the builders ``extract`` itself calls); the
plain conv, pool and linear layers are torch built-ins, as in the extracted models.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.ops import make_activation
from search_spaces import BlockSpec, SearchSpace


def build_block(spec: BlockSpec, space: SearchSpace) -> nn.Module:
    """Module computing ``spec`` in eval mode; ``space`` supplies what a spec leaves open
    (squeeze-excite activation and gate, BN settings)."""
    op = spec.op
    act = make_activation(spec.act)  # type: ignore[arg-type]
    if op in ("conv", "conv_valid"):
        padding = spec.kernel // 2 if op == "conv" else 0
        layers: list[nn.Module] = [
            nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, padding,
                      bias=spec.bias)
        ]  # fmt: skip
        if spec.bn:
            layers.append(nn.BatchNorm2d(spec.out_channels))
        return nn.Sequential(*layers, act).eval()
    if op == "pool":  # global average pool; NASNet's head applies its ReLU first
        return nn.Sequential(act, nn.AdaptiveAvgPool2d(1)).eval()
    if op == "linear":
        return nn.Linear(spec.in_channels, spec.out_channels, bias=spec.bias).eval()
    if op == "mbconv":
        return _mbconv(spec, space).eval()
    return _nasnet_op(spec, space).eval()


def block_input(spec: BlockSpec, batch_size: int) -> torch.Tensor:
    """A random input of the shape ``spec`` reads."""
    generator = torch.Generator().manual_seed(0)
    if spec.op == "linear":
        return torch.randn(batch_size, spec.in_channels, generator=generator)
    shape = (batch_size, spec.in_channels, spec.input_size, spec.input_size)
    return torch.randn(*shape, generator=generator)


def _config(space: SearchSpace) -> Any:
    config = getattr(space, "config", None)
    if config is None:
        raise TypeError(f"space {space.name!r} has no config to build its blocks from")
    return config


def _mbconv(spec: BlockSpec, space: SearchSpace) -> nn.Module:
    from search_spaces._mbconv import DynamicMBConv
    from search_spaces._mbconv_config import MBConvConfig, StageSpec

    config = _config(space)
    if not isinstance(config, MBConvConfig):
        raise TypeError(f"space {space.name!r} has no MBConv config; cannot build {spec.key}")
    expand = int(spec.expand)
    if expand != spec.expand:
        raise ValueError(f"expand must be a whole ratio to build {spec.key}, got {spec.expand}")
    stage = StageSpec(
        widths=(spec.out_channels,),
        depths=(1,),
        kernels=(spec.kernel,),
        expands=(expand,),
        stride=spec.stride,
        act=spec.act,
        se=spec.se,
    )
    block = DynamicMBConv(
        max_in_channels=spec.in_channels, stage=stage, stride=spec.stride, config=config
    )
    if block.mid_channels != spec.mid_channels or block.residual != spec.residual:
        raise ValueError(
            f"{spec.key}: extraction would build mid={block.mid_channels} "
            f"residual={block.residual}, the spec says mid={spec.mid_channels} "
            f"residual={spec.residual}"
        )
    return block.to_static()


def _nasnet_op(spec: BlockSpec, space: SearchSpace) -> nn.Module:
    from search_spaces._nasnet_ops import (
        FactorizedConv,
        Pool,
        ReLUConvBN,
        SeparableStack,
        SharedFactorizedReduce,
    )

    config = _config(space)
    bn = {"eps": float(config.bn_eps), "momentum": float(config.bn_momentum)}
    c, f, k, stride = spec.in_channels, spec.out_channels, spec.kernel, spec.stride
    op = spec.op
    if op == "relu_conv_bn":
        return ReLUConvBN(c, f, k, bn).to_static(c, stride)
    if op == "relu_dil_conv_bn":
        return ReLUConvBN(c, f, k, bn, dilation=2).to_static(c, stride)
    if op == "relu_fac_conv_bn":
        return FactorizedConv(c, f, k, bn).to_static(c, stride)
    if op == "sep_conv_stack":
        return SeparableStack(c, f, k, bn).to_static(c, stride)
    if op == "factorized_reduce":
        return SharedFactorizedReduce(c, f, bn, relu=spec.act == "relu").to_static(c)
    if op in ("avg_pool", "max_pool"):
        return Pool(op, k, c, c, bn, project=False).to_static(c, stride)
    raise ValueError(f"cannot build a module for op {op!r} ({spec.key})")
