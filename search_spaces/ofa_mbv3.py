"""Once-for-All MobileNetV3 space (Cai et al., ICLR 2020, arXiv:1908.09791).

Reproduces ``OFAMobileNetV3`` of the public mit-han-lab/once-for-all code: a 3x3/2 stem (16
channels, h-swish), a fixed first MBConv (expand 1, k3, 16 channels, ReLU), five elastic units
of widths 24/40/80/112/160 with strides 2/2/2/1/2, squeeze-excite in units 2, 4 and 5, ReLU in
units 1-2 and h-swish in 3-5; per unit depth {2, 3, 4}, per block kernel {3, 5, 7} (with the
learned kernel transformation matrices) and expand ratio {3, 4, 6}; the MobileNetV3 head
(1x1 conv to 960 + BN + h-swish, pool, 1x1 conv to 1280 without BN or bias + h-swish,
dropout 0.1, classifier); resolutions 128..224 step 4. ``imagenet_w12`` is OFA's width
multiplier 1.2 (stem 24, units 32/48/96/136/192, head 1152/1536). ``tiny`` keeps the structure
for 32 px inputs: unit 3 does not stride (32 px ends at 2x2) and widths are narrower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from search_spaces._mbconv_arch import MBConvArch
from search_spaces._mbconv_config import MBConvConfig, StageSpec, round_channels
from search_spaces._mbconv_space import MBConvSpace
from search_spaces.base import TrainingRecipe

NAME = "ofa_mbv3"
PRESETS: tuple[str, ...] = ("tiny", "imagenet", "imagenet_w12")
SOURCES = (
    "Cai et al., Once-for-All: Train One Network and Specialize it for Efficient Deployment, "
    "ICLR 2020, arXiv:1908.09791",
    "mit-han-lab/once-for-all, OFAMobileNetV3 (ofa_mbv3_d234_e346_k357_w1.0 / _w1.2)",
)
#: Published figures the ``imagenet`` preset reproduces (tested): the full network's params
#: and the MACs of the D4/E3/K3 subnet at 224 px.
PUBLISHED_SUPERNET_PARAMS = 7.7e6
PUBLISHED_D4_E3_K3_MACS = 226e6


class OFAArch(MBConvArch):
    """An OFA MobileNetV3 subnet: 5 depths, 20 kernel and 20 expand slots (4 per unit)."""

    space: Literal["ofa_mbv3"] = "ofa_mbv3"


_UNITS = (  # width (multiplier 1.0), stride, activation, squeeze-excite
    (24, 2, "relu", False),
    (40, 2, "relu", True),
    (80, 2, "hswish", False),
    (112, 1, "hswish", True),
    (160, 2, "hswish", True),
)
_TINY_WIDTHS = (8, 16, 24, 32, 40)
_TINY_STRIDES = (2, 2, 1, 1, 2)  # unit 3 keeps its resolution: 32 px ends at 2x2, not 1x1


def _config(preset: str) -> MBConvConfig:
    tiny = preset == "tiny"
    multiplier = 1.2 if preset == "imagenet_w12" else 1.0

    def width(channels: int) -> int:
        return round_channels(channels * multiplier)

    stem = 8 if tiny else width(16)
    units = tuple(
        StageSpec(
            widths=(tiny_width if tiny else width(channels),),
            depths=(2, 3, 4),
            kernels=(3, 5, 7),
            expands=(3, 4, 6),
            stride=tiny_stride if tiny else stride,
            act=act,
            se=se,
        )
        for (channels, stride, act, se), tiny_width, tiny_stride in zip(
            _UNITS, _TINY_WIDTHS, _TINY_STRIDES, strict=True
        )
    )
    first = StageSpec((stem,), (1,), (3,), (1,), 1, "relu", False, searchable=False)
    last = units[-1].widths[0]
    return MBConvConfig(
        name=NAME,
        preset=preset,
        stem_widths=(stem,),
        stem_stride=2,
        stem_act="hswish",
        stages=(first, *units),
        head_widths=(6 * last if tiny else width(960),),
        head_act="hswish",
        mix_width=8 * last if tiny else width(1280),
        mix_bias=False,
        resolutions=(24, 28, 32) if tiny else tuple(range(128, 225, 4)),
        default_resolution=32 if tiny else 224,
        num_classes=10 if tiny else 1000,
        elastic_width=False,
        kernel_transform=True,
        se_act="relu",
        se_gate="hsigmoid",
        dropout=0.1,
        # Not in OFA's code (its supernet starts from a trained full network); trained from
        # scratch in the demo budget, residual blocks that start as identity lift the random
        # subnets of the tiny supernet on digits by 2.2-2.4 points (2 seeds)
        zero_init_residual_bn=True,
        sources=SOURCES,
    )


def _references(space: MBConvSpace) -> Mapping[str, MBConvArch]:
    """OFA's progressive-shrinking anchor: every unit 4 deep, every block k3 and expand 3."""
    blocks = sum(s.max_depth for s in space.config.searchable_stages)
    d4_e3_k3 = {
        "resolution": space.default_resolution,
        "depth": [4] * 5,
        "kernel": [3] * blocks,
        "expand": [3] * blocks,
    }
    return {"d4_e3_k3": space.arch_from_dict(d4_e3_k3)}


def build(preset: str, *, num_classes: int | None = None, in_channels: int = 3) -> MBConvSpace:
    """The OFA MobileNetV3 space at ``preset`` (one of ``PRESETS``)."""
    return MBConvSpace(
        _config(preset),
        OFAArch,
        num_classes=num_classes,
        in_channels=in_channels,
        references=_references,
        default_training=TrainingRecipe("progressive_shrinking", "sandwich"),
    )
