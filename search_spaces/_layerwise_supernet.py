"""Supernets of the layer-wise MBConv spaces, and their extraction.

Two ways to hold a layer's options, one network around them:

- ``candidates`` (ProxylessNAS, arXiv:1812.00332, section 3.1): every MBConv candidate of a
  layer is its own module with its own weights, held side by side; the active path runs the
  chosen candidate only (ProxylessNAS's binarised path, no weighted sum of outputs).
- ``superkernel`` (Single-Path NAS, arXiv:1904.02877, section 3.1): one MBConv per layer
  stores the largest kernel and expand ratio; the 3x3 kernel is the centre of the 5x5 one and
  the expand-3 channels are the first half of the expand-6 ones (``DynamicMBConv`` without
  kernel transformation slices them).

A skipped layer is not run at all: its residual leaves the identity.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nas.ops import ElasticKernelConv, make_activation
from search_spaces._layerwise import SKIP, LayerwiseArch
from search_spaces._mbconv import DynamicMBConv
from search_spaces._mbconv_config import MBConvConfig, StageSpec
from search_spaces._mbconv_static import StaticMBConv, StaticMBConvNet
from search_spaces.supernet import Supernet

if TYPE_CHECKING:
    from search_spaces._layerwise_space import LayerwiseSpace


def candidate_name(kernel: int, expand: int) -> str:
    return f"k{kernel}_e{expand}"


def static_mbconv(
    config: MBConvConfig, stage: StageSpec, in_channels: int, kernel: int, expand: int, stride: int
) -> StaticMBConv:
    """A fixed MBConv (the candidates' and fixed layers' module), plain torch throughout."""
    mid = in_channels * expand
    out = stage.widths[0]
    bn = {"eps": config.bn_eps, "momentum": config.bn_momentum}
    layers: list[nn.Module] = []
    if expand != 1:
        layers += [
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid, **bn),
            make_activation(stage.act),  # type: ignore[arg-type]
        ]
    layers += [
        nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
        nn.BatchNorm2d(mid, **bn),
        make_activation(stage.act),  # type: ignore[arg-type]
        nn.Conv2d(mid, out, 1, bias=False),
        nn.BatchNorm2d(out, **bn),
    ]
    return StaticMBConv(nn.Sequential(*layers), stride == 1 and in_channels == out)


class CandidateLayer(nn.Module):
    """ProxylessNAS mixed edge: one independent MBConv per (kernel, expand), side by side."""

    def __init__(
        self, config: MBConvConfig, stage: StageSpec, in_channels: int, stride: int
    ) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict(
            {
                candidate_name(k, e): static_mbconv(config, stage, in_channels, k, e, stride)
                for k in stage.kernels
                for e in stage.expands
            }
        )
        # A name, not a module attribute: assigning a module would register it a second time.
        self.active = candidate_name(stage.kernels[-1], stage.expands[-1])

    def configure(self, kernel: int, expand: int) -> None:
        self.active = candidate_name(kernel, expand)

    def forward(self, x: Tensor) -> Tensor:
        return self.candidates[self.active](x)

    def to_static(self) -> nn.Module:
        return copy.deepcopy(self.candidates[self.active])


class SuperkernelLayer(nn.Module):
    """Single-Path NAS superkernel: one MBConv whose smaller options are slices of the largest."""

    def __init__(
        self, config: MBConvConfig, stage: StageSpec, in_channels: int, stride: int
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = stage.widths[0]
        self.block = DynamicMBConv(
            max_in_channels=in_channels, stage=stage, stride=stride, config=config
        )

    def configure(self, kernel: int, expand: int) -> None:
        self.block.configure(self.in_channels, self.out_channels, kernel, expand)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)

    def to_static(self) -> nn.Module:
        return self.block.to_static()

    def reorder_channels(self) -> None:
        self.block.reorder_channels()


class FixedLayer(nn.Module):
    """A layer outside the search (the first MBConv, Single-Path NAS's last one)."""

    def __init__(self, block: StaticMBConv) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)

    def to_static(self) -> nn.Module:
        return copy.deepcopy(self.block)


Layer = CandidateLayer | SuperkernelLayer | FixedLayer


class LayerwiseSupernet(Supernet):
    """Stem conv, fixed and searchable MBConv layers, 1x1 head conv, pool, classifier."""

    def __init__(self, space: LayerwiseSpace, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        config = space.config
        self.space = space
        self.num_classes = num_classes
        self.in_channels = in_channels
        bn = {"eps": config.bn_eps, "momentum": config.bn_momentum}
        width = config.stem_widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, config.stem_stride, 1, bias=False),
            nn.BatchNorm2d(width, **bn),
            make_activation(config.stem_act),  # type: ignore[arg-type]
        )
        searchable_kind = (
            CandidateLayer if space.supernet_kind == "candidates" else SuperkernelLayer
        )
        layers: list[Layer] = []
        self._searchable: list[CandidateLayer | SuperkernelLayer] = []
        for stage in config.stages:
            for index in range(stage.max_depth):
                stride = stage.stride if index == 0 else 1
                layer: Layer
                if stage.searchable:
                    layer = searchable_kind(config, stage, width, stride)
                    self._searchable.append(layer)
                else:
                    k, e = stage.kernels[0], stage.expands[0]
                    layer = FixedLayer(static_mbconv(config, stage, width, k, e, stride))
                layers.append(layer)
                width = stage.widths[0]
        self.layers = nn.ModuleList(layers)
        head = config.head_widths[0]
        self.head = nn.Sequential(
            nn.Conv2d(width, head, 1, bias=False),
            nn.BatchNorm2d(head, **bn),
            make_activation(config.head_act),  # type: ignore[arg-type]
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(head, num_classes))
        self._init_weights()
        self._active_layers: list[Layer] = []
        self.set_active(space.extreme("max"))

    @torch.no_grad()
    def _init_weights(self) -> None:
        """He (fan-out) normal convs, as ProxylessNAS's ``he_fout`` init; unit BN, except, with
        ``zero_init_residual_bn``, the last BN of every residual layer (BigNAS section 3.3).

        With unit gain every residual layer a subnet runs adds a unit-variance branch to the
        stream, so subnets of different depths see differently scaled features through the
        shared head; starting each branch at zero keeps them alike, and a side-by-side
        candidate that trained on few steps adds little until it has learnt something.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d | ElasticKernelConv):
                _he_fan_out(module.weight)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound)
                module.bias.zero_()
        if not self.space.config.zero_init_residual_bn:
            return
        for layer in self._searchable:
            if isinstance(layer, CandidateLayer):
                for candidate in layer.candidates.values():
                    if candidate.residual:  # type: ignore[union-attr]
                        candidate.layers[-1].weight.zero_()  # type: ignore[index,union-attr]
            elif layer.block.stride == 1 and layer.in_channels == layer.out_channels:
                layer.block.project_bn.weight.zero_()

    # --- the active subnet -------------------------------------------------------------------
    def set_active(self, arch: LayerwiseArch) -> None:
        self.space.check_member(arch)
        active: list[Layer] = []
        searchable = iter(self._searchable)
        slot = 0
        for layer in self.layers:
            if isinstance(layer, FixedLayer):
                active.append(layer)
                continue
            chosen = next(searchable)
            kernel, expand = arch.kernel[slot], arch.expand[slot]
            slot += 1
            if expand != SKIP:
                chosen.configure(kernel, expand)
                active.append(chosen)
        self._active_layers = active
        self._active_arch = arch

    @property
    def searchable_layers(self) -> tuple[CandidateLayer | SuperkernelLayer, ...]:
        """One per arch slot, in network order."""
        return tuple(self._searchable)

    @property
    def active_arch(self) -> LayerwiseArch:
        return self._active_arch

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self._active_layers:
            x = layer(x)
        return self.classifier(torch.flatten(self.head(x), 1))

    @property
    def shrinks_channels(self) -> bool:
        """Whether some subnet runs a channel prefix of a layer (Single-Path NAS's expand 3)."""
        return self.space.supernet_kind == "superkernel"

    def reorder_channels(self) -> None:
        """Superkernels sort expanded channels (e3 keeps the best half); candidates never shrink."""
        for layer in self._searchable:
            if isinstance(layer, SuperkernelLayer):
                layer.reorder_channels()

    # --- extraction --------------------------------------------------------------------------
    def extract(self, arch: LayerwiseArch) -> StaticMBConvNet:
        """Static model of ``arch``; the active arch is restored afterwards."""
        previous = self._active_arch
        self.set_active(arch)
        try:
            blocks = nn.Sequential(*(layer.to_static() for layer in self._active_layers))
            net = StaticMBConvNet(
                copy.deepcopy(self.stem),
                blocks,
                copy.deepcopy(self.head),
                copy.deepcopy(self.classifier),
            )
            return net.train(self.training)
        finally:
            self.set_active(previous)


def _he_fan_out(weight: Tensor) -> None:
    fan_out = weight.size(0) * weight[0, 0].numel()
    weight.normal_(0.0, math.sqrt(2.0 / fan_out))
