"""Single-Path NAS space (Stamoulis et al., ECML-PKDD 2019, arXiv:1904.02877).

Reproduces the supernet of the public dstamoulis/single-path-nas code (``supernet_macro.py``,
the MnasNet-based macro-architecture of paper Figure 2): a 3x3/2 stem conv (32) + BN + ReLU, a
fixed MBConv (expand 1, k3) to 16 channels, five searchable blocks of 4 layers with widths
24/40/80/96/192 and strides 2/2/2/1/2, a fixed MBConv (expand 6, k3) to 320, a 1x1 conv to
1280 + BN + ReLU, global pool, dropout 0.2 and classifier; ReLU everywhere, no squeeze-excite,
BN eps 1e-3 and momentum 0.01 (TensorFlow's 0.99). Each searchable layer chooses kernel
{3, 5} and expand ratio {3, 6}, or skip (``expand = 0``, only where a residual exists, i.e.
not the first layer of a block): the paper's decisions ``t_k`` and ``t_e``.

The supernet is one superkernel per layer (section 3.1): the 3x3 kernel is the centre of the
5x5 kernel and the expand-3 channels are the first half of the expand-6 channels, shared
storage sliced by ``nas.ops`` (no kernel transformation). The published ImageNet model is a
reference arch; its figures follow the public reimplementations (osmr/imgclsmob ``spnasnet``,
timm ``spnasnet_100``): 4.42M parameters, 333M MACs at 224 px. ``tiny`` keeps the structure
with narrower widths for 32 px inputs; its first block does not stride (32 px ends at 2x2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from search_spaces._layerwise import SKIP, LayerwiseArch
from search_spaces._layerwise_space import LayerwiseSpace
from search_spaces._mbconv_config import MBConvConfig, StageSpec

NAME = "single_path"
PRESETS: tuple[str, ...] = ("tiny", "imagenet")
SOURCES = (
    "Stamoulis et al., Single-Path NAS: Designing Hardware-Efficient ConvNets in less than "
    "4 Hours, ECML-PKDD 2019, arXiv:1904.02877",
    "dstamoulis/single-path-nas: nas-search/supernet_macro.py (search space); "
    "osmr/imgclsmob spnasnet.py and timm spnasnet_100 (the published ImageNet model)",
)

#: The Single-Path NAS ImageNet model per searchable block (24/40/80/96/192): kernels and
#: expand ratios, 0 = skipped (its first block runs three layers).
_MODEL_BLOCKS = (
    ((3, 3, 3, 3), (3, 3, 3, SKIP)),
    ((5, 3, 3, 3), (6, 3, 3, 3)),
    ((5, 3, 3, 3), (6, 3, 3, 3)),
    ((5, 5, 5, 5), (6, 3, 3, 3)),
    ((5, 5, 5, 5), (6, 6, 6, 6)),
)
SINGLE_PATH_KERNELS = tuple(k for kernels, _ in _MODEL_BLOCKS for k in kernels)
SINGLE_PATH_EXPANDS = tuple(e for _, expands in _MODEL_BLOCKS for e in expands)
#: What public reimplementations of that model count (1000 classes, 224 px).
PUBLISHED = {"Single-Path NAS": {"params": 4_421_616, "macs": 333.5e6}}


class SinglePathArch(LayerwiseArch):
    """A Single-Path NAS subnet: 20 kernel and 20 expand slots (5 blocks of 4 layers)."""

    space: Literal["single_path"] = "single_path"


_IMAGENET = {"stem": 32, "first": 16, "widths": (24, 40, 80, 96, 192), "last": 320, "head": 1280}
_TINY = {"stem": 16, "first": 8, "widths": (16, 16, 24, 32, 48), "last": 64, "head": 128}
_STRIDES = {"imagenet": (2, 2, 2, 1, 2), "tiny": (2, 2, 1, 1, 2)}


def _config(preset: str) -> MBConvConfig:
    tiny = preset == "tiny"
    sizes = _TINY if tiny else _IMAGENET
    first = StageSpec((sizes["first"],), (1,), (3,), (1,), 1, "relu", False, searchable=False)
    last = StageSpec((sizes["last"],), (1,), (3,), (6,), 1, "relu", False, searchable=False)
    blocks = tuple(
        StageSpec((width,), (4,), (3, 5), (3, 6), stride, "relu", False)
        for width, stride in zip(sizes["widths"], _STRIDES[preset], strict=True)
    )
    return MBConvConfig(
        name=NAME,
        preset=preset,
        stem_widths=(sizes["stem"],),
        stem_stride=2,
        stem_act="relu",
        stages=(first, *blocks, last),
        head_widths=(sizes["head"],),
        head_act="relu",
        mix_width=None,
        mix_bias=False,
        resolutions=(32,) if tiny else (224,),
        default_resolution=32 if tiny else 224,
        num_classes=10 if tiny else 1000,
        elastic_width=False,
        kernel_transform=False,
        dropout=0.2,
        bn_eps=1e-3,
        bn_momentum=0.01,
        zero_init_residual_bn=True,  # see ``LayerwiseSupernet._init_weights``
        sources=SOURCES,
    )


def _references(space: LayerwiseSpace) -> Mapping[str, LayerwiseArch]:
    """The published model's layer choices (in ``tiny`` too, on its narrower backbone)."""
    model = {
        "resolution": space.default_resolution,
        "kernel": SINGLE_PATH_KERNELS,
        "expand": SINGLE_PATH_EXPANDS,
    }
    return {"Single-Path NAS": space.arch_from_dict(model)}


def build(preset: str, *, num_classes: int | None = None, in_channels: int = 3) -> LayerwiseSpace:
    """The Single-Path NAS space at ``preset`` (one of ``PRESETS``)."""
    return LayerwiseSpace(
        _config(preset),
        SinglePathArch,
        supernet_kind="superkernel",
        num_classes=num_classes,
        in_channels=in_channels,
        references=_references,
    )
