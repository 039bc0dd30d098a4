"""BigNAS single-stage space (Yu et al., ECCV 2020, arXiv:2003.11142).

Reproduces the MobileNetV2/EfficientNet-style search space of BigNAS Table 1: a 3x3/2 stem
(32-40 channels), seven MBConv stages (widths 16-24, 24-32, 40-48, 80-88, 112-128, 192-216,
320-352 in steps of 8; depths 1-2, 2-3, 2-3, 2-4, 2-6, 2-6, 1-2; kernels {3} in the first two
stages and {3, 5} after; expand ratio 1 in the first stage, {4, 5, 6} in the 112-128 stage and
6 elsewhere; strides 1, 2, 2, 2, 1, 2, 1), a 1x1 head conv of 1280-1408 channels and
input resolutions 192-320, all elastic, with swish activations and squeeze-excite. Details
the paper leaves open follow the public AttentiveNAS/AlphaNet implementation of the same
family: squeeze-excite only in stages 3, 5, 6 and 7 (ReLU inside, hard-sigmoid gate,
bottleneck = expanded channels / 4 rounded to 8), resolutions in steps of 32, dropout 0.2,
no kernel transformation. Zero-initialised last BN in residual blocks is from BigNAS (3.3).
``tiny`` keeps the structure and the number of choices for 32 px inputs: stage 4 does not
stride (32 px ends at 2x2), widths are about a third, stages are one block shallower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from search_spaces._mbconv_arch import MBConvArch
from search_spaces._mbconv_config import MBConvConfig, StageSpec
from search_spaces._mbconv_space import MBConvSpace
from search_spaces.base import TrainingRecipe

NAME = "bignas"
PRESETS: tuple[str, ...] = ("tiny", "imagenet")
SOURCES = (
    "Yu et al., BigNAS: Scaling Up Neural Architecture Search with Big Single-Stage Models, "
    "ECCV 2020, arXiv:2003.11142 (Table 1)",
    "Wang et al., AttentiveNAS, CVPR 2021, arXiv:2011.09011, and AlphaNet, ICML 2021, "
    "arXiv:2102.07954: public supernet configuration of the same family (details only)",
)
#: Published ImageNet MACs of BigNAS's models (paper Table 2); all lie inside this space.
PUBLISHED_MACS = {
    "BigNASModel-S": 242e6,
    "BigNASModel-M": 418e6,
    "BigNASModel-L": 586e6,
    "BigNASModel-XL": 1040e6,
}


class BigNASArch(MBConvArch):
    """A BigNAS subnet: widths (stem, 7 stages, head), 7 depths, 26 kernel/expand slots."""

    space: Literal["bignas"] = "bignas"
    width: tuple[int, ...]


def _steps(low: int, high: int) -> tuple[int, ...]:
    return tuple(range(low, high + 1, 8))


_Choices = tuple[int, ...]
# widths, depths, kernels, expands, stride, squeeze-excite
_ImagenetStage = tuple[_Choices, _Choices, _Choices, _Choices, int, bool]
_IMAGENET_STAGES: tuple[_ImagenetStage, ...] = (
    (_steps(16, 24), (1, 2), (3,), (1,), 1, False),
    (_steps(24, 32), (2, 3), (3,), (6,), 2, False),
    (_steps(40, 48), (2, 3), (3, 5), (6,), 2, True),
    (_steps(80, 88), (2, 3, 4), (3, 5), (6,), 2, False),
    (_steps(112, 128), (2, 3, 4, 5, 6), (3, 5), (4, 5, 6), 1, True),
    (_steps(192, 216), (2, 3, 4, 5, 6), (3, 5), (6,), 2, True),
    (_steps(320, 352), (1, 2), (3, 5), (6,), 1, True),
)
# tiny: same number of choices per dimension; about a third of the channels or less; one block
# shallower where the depth range allows (21 blocks at most); stage 4 keeps its resolution so
# 32 px inputs end at 2x2. Per stage: widths, depths, stride.
_TINY_STAGES: tuple[tuple[_Choices, _Choices, int], ...] = (
    (_steps(8, 16), (1, 2), 1),
    (_steps(16, 24), (1, 2), 2),
    (_steps(16, 24), (1, 2), 2),
    (_steps(32, 40), (1, 2, 3), 1),
    (_steps(48, 64), (1, 2, 3, 4, 5), 1),
    (_steps(48, 72), (1, 2, 3, 4, 5), 2),
    (_steps(80, 112), (1, 2), 1),
)


def _stage(imagenet: _ImagenetStage, tiny: tuple[_Choices, _Choices, int] | None) -> StageSpec:
    widths, depths, kernels, expands, stride, se = imagenet
    if tiny is not None:
        widths, depths, stride = tiny
    return StageSpec(widths, depths, kernels, expands, stride, act="swish", se=se)


def _config(preset: str) -> MBConvConfig:
    tiny = preset == "tiny"
    tiny_stages = _TINY_STAGES if tiny else (None,) * len(_IMAGENET_STAGES)
    stages = tuple(map(_stage, _IMAGENET_STAGES, tiny_stages))
    return MBConvConfig(
        name=NAME,
        preset=preset,
        stem_widths=_steps(24, 32) if tiny else _steps(32, 40),
        stem_stride=2,
        stem_act="swish",
        stages=stages,
        head_widths=_steps(128, 256) if tiny else _steps(1280, 1408),
        head_act="swish",
        mix_width=None,
        mix_bias=False,
        resolutions=(24, 28, 32) if tiny else (192, 224, 256, 288, 320),
        default_resolution=32 if tiny else 224,
        num_classes=10 if tiny else 1000,
        elastic_width=True,
        kernel_transform=False,
        se_act="relu",
        se_gate="hsigmoid",
        dropout=0.2,
        zero_init_residual_bn=True,
        sources=SOURCES,
    )


def _references(space: MBConvSpace) -> Mapping[str, MBConvArch]:
    """The smallest and largest subnets at the default resolution (BigNAS reports models
    between them; their full configurations are not published)."""
    return {
        "min_default_resolution": space.extreme("min", space.default_resolution),
        "max_default_resolution": space.extreme("max", space.default_resolution),
    }


def build(preset: str, *, num_classes: int | None = None, in_channels: int = 3) -> MBConvSpace:
    """The BigNAS space at ``preset`` (one of ``PRESETS``)."""
    return MBConvSpace(
        _config(preset),
        BigNASArch,
        num_classes=num_classes,
        in_channels=in_channels,
        references=_references,
        default_training=TrainingRecipe("single_stage", "sandwich"),
    )
