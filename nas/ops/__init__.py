"""Dynamic (weight-sharing) ops for supernets and their static counterparts.

Every dynamic op stores its largest configuration and runs a smaller active one by slicing
(Once-for-All, arXiv:1908.09791; BigNAS, arXiv:2003.11142); ``to_static`` extracts a plain
torch module with copied weights that computes exactly the same function.
"""

from __future__ import annotations

from nas.ops.activations import (
    ACTIVATION_NAMES,
    GATE_NAMES,
    ActivationName,
    GateName,
    make_activation,
    make_gate,
)
from nas.ops.dynamic_conv import DynamicConv2d, DynamicDepthwiseConv2d
from nas.ops.dynamic_linear import DynamicLinear
from nas.ops.dynamic_norm import DynamicBatchNorm2d
from nas.ops.dynamic_se import DynamicSE
from nas.ops.elastic_kernel import ElasticKernelConv
from nas.ops.reorder import l1_importance, reorder_channels, reorder_se_mid_channels
from nas.ops.rounding import make_divisible
from nas.ops.slicing import leading_slice
from nas.ops.static import SqueezeExcite

__all__ = [
    "ACTIVATION_NAMES",
    "GATE_NAMES",
    "ActivationName",
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicDepthwiseConv2d",
    "DynamicLinear",
    "DynamicSE",
    "ElasticKernelConv",
    "GateName",
    "SqueezeExcite",
    "l1_importance",
    "leading_slice",
    "make_activation",
    "make_divisible",
    "make_gate",
    "reorder_channels",
    "reorder_se_mid_channels",
]
