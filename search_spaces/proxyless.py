"""ProxylessNAS mobile space (Cai et al., ICLR 2019, arXiv:1812.00332).

Reproduces the backbone of the public mit-han-lab/proxylessnas search code
(``SuperProxylessNASNets``): a 3x3/2 stem conv (32) + BN + ReLU6, a fixed MBConv (expand 1,
k3) to 16 channels, six searchable stages of depths 4/4/4/4/4/1 and strides 2/2/2/1/2/1, a 1x1
conv to 1280 + BN + ReLU6, global pool and classifier; ReLU6 everywhere, no squeeze-excite,
BN eps 1e-3 and momentum 0.1, expanded width = input width x expand ratio. Each searchable
layer picks one of the six MBConv candidates {3x3, 5x5, 7x7} x {expand 3, 6}; every layer with
a residual (all but the first of a stage) may also be ``zero`` (``expand = 0``): skipped,
leaving the identity. The supernet holds a layer's candidates side by side with separate
weights and runs only the chosen one (section 3.1, binarised paths).

Stage widths: the search code defaults to 24/40/80/96/192/320, but the released
ProxylessNAS-Mobile model has 32 channels in the first stage, so the ``imagenet`` preset uses
32/40/80/96/192/320 and ProxylessNAS-Mobile (4.08M params, 320M MACs at 224 px) is an arch of
the space. ProxylessNAS-GPU and -CPU are not: they have other stem, stage and head widths
(e.g. GPU 40/24 then 32/56/112/128/256/432 and a 1728 head). ``tiny`` keeps the structure with
narrower widths for 32 px inputs; its first stage does not stride (32 px ends at 2x2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from search_spaces._layerwise import SKIP, LayerwiseArch
from search_spaces._layerwise_space import LayerwiseSpace
from search_spaces._mbconv_config import MBConvConfig, StageSpec

NAME = "proxyless"
PRESETS: tuple[str, ...] = ("tiny", "imagenet")
SOURCES = (
    "Cai et al., ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware, "
    "ICLR 2019, arXiv:1812.00332",
    "mit-han-lab/proxylessnas: search/models/super_nets/super_proxyless.py (search space) and "
    "the released proxyless_mobile net config (reference arch)",
)

#: ProxylessNAS-Mobile per searchable stage (32/40/80/96/192/320): kernels and expand ratios,
#: 0 = zero layer (its first stage runs two layers; the kernel of a zero layer does not exist).
_MOBILE_STAGES = (
    ((5, 3, 3, 3), (3, 3, SKIP, SKIP)),
    ((7, 3, 5, 5), (3, 3, 3, 3)),
    ((7, 5, 5, 5), (6, 3, 3, 3)),
    ((5, 5, 5, 5), (6, 3, 3, 3)),
    ((7, 7, 7, 7), (6, 6, 3, 3)),
    ((7,), (6,)),
)
PROXYLESS_MOBILE_KERNELS = tuple(k for kernels, _ in _MOBILE_STAGES for k in kernels)
PROXYLESS_MOBILE_EXPANDS = tuple(e for _, expands in _MOBILE_STAGES for e in expands)
#: Published: 4.1M parameters (paper Table 2 / released model), 320M MACs at 224 px.
PUBLISHED = {"ProxylessNAS-Mobile": {"params": 4.1e6, "macs": 320e6}}


class ProxylessArch(LayerwiseArch):
    """A ProxylessNAS subnet: 21 kernel and 21 expand slots (4+4+4+4+4+1 layers)."""

    space: Literal["proxyless"] = "proxyless"


_DEPTHS = (4, 4, 4, 4, 4, 1)
_IMAGENET = {"stem": 32, "first": 16, "widths": (32, 40, 80, 96, 192, 320), "head": 1280}
_TINY = {"stem": 16, "first": 8, "widths": (16, 16, 24, 32, 48, 64), "head": 128}
_STRIDES = {"imagenet": (2, 2, 2, 1, 2, 1), "tiny": (2, 2, 1, 1, 2, 1)}


def _config(preset: str) -> MBConvConfig:
    tiny = preset == "tiny"
    sizes = _TINY if tiny else _IMAGENET
    first = StageSpec((sizes["first"],), (1,), (3,), (1,), 1, "relu6", False, searchable=False)
    stages = tuple(
        StageSpec((width,), (depth,), (3, 5, 7), (3, 6), stride, "relu6", False)
        for width, depth, stride in zip(sizes["widths"], _DEPTHS, _STRIDES[preset], strict=True)
    )
    return MBConvConfig(
        name=NAME,
        preset=preset,
        stem_widths=(sizes["stem"],),
        stem_stride=2,
        stem_act="relu6",
        stages=(first, *stages),
        head_widths=(sizes["head"],),
        head_act="relu6",
        mix_width=None,
        mix_bias=False,
        resolutions=(32,) if tiny else (224,),
        default_resolution=32 if tiny else 224,
        num_classes=10 if tiny else 1000,
        elastic_width=False,
        kernel_transform=False,
        dropout=0.0,  # the search code's default
        bn_eps=1e-3,
        bn_momentum=0.1,
        zero_init_residual_bn=True,  # see ``LayerwiseSupernet._init_weights``
        sources=SOURCES,
    )


def _references(space: LayerwiseSpace) -> Mapping[str, LayerwiseArch]:
    """ProxylessNAS-Mobile's layer choices (in ``tiny`` too, on its narrower backbone)."""
    mobile = {
        "resolution": space.default_resolution,
        "kernel": PROXYLESS_MOBILE_KERNELS,
        "expand": PROXYLESS_MOBILE_EXPANDS,
    }
    return {"ProxylessNAS-Mobile": space.arch_from_dict(mobile)}


def build(preset: str, *, num_classes: int | None = None, in_channels: int = 3) -> LayerwiseSpace:
    """The ProxylessNAS space at ``preset`` (one of ``PRESETS``)."""
    return LayerwiseSpace(
        _config(preset),
        ProxylessArch,
        supernet_kind="candidates",
        num_classes=num_classes,
        in_channels=in_channels,
        references=_references,
    )
