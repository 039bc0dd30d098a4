"""The NASNet one-shot supernet and its extraction.

Each cell position owns its preprocessing, one module per (block slot, op) and, in reduction
cells, the factorized reductions of joined inputs; the normal positions follow the arch's normal
cell, the reduction positions its reduction cell. Forward computes only what the active cells
use. A cell's output width depends on the arch (joined states x F); the 1x1 convs reading it
(and the classifier) give every state its own weight columns (``state_columns``), so a column
always reads the same state whichever states an arch joins.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops import DynamicConv2d, DynamicLinear
from search_spaces._nasnet_genotype import CELLS, NUM_STATES, OPS, Cell, NASNetArch
from search_spaces._nasnet_ops import (
    SharedFactorizedReduce,
    SharedOp,
    SlicedConv,
    StaticCell,
    StaticNASNet,
    combine,
    gather_columns,
    make_op,
    state_columns,
)
from search_spaces._nasnet_plan import H0, H1, Position, positions
from search_spaces.supernet import Supernet

if TYPE_CHECKING:
    from search_spaces.nasnet import NASNetSpace

Columns = tuple[Tensor | None, Tensor | None]
"""Per cell input (h_i, h_{i-1}): its ``state_columns``, ``None`` for the stem output."""
#: Auxiliary head of the TensorFlow release: 1x1 conv to 128, then a conv to 768, classifier.
AUX_MID, AUX_FEATURES, AUX_POOL = 128, 768, 4


class Preprocess(nn.Module):
    """ReLU-1x1 conv-BN of a cell input whose width depends on the arch."""

    def __init__(self, max_in: int, out: int, bn: dict[str, float]) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in_channels=max_in, max_out_channels=out, kernel_sizes=1)
        self.bn = nn.BatchNorm2d(out, **bn)  # type: ignore[arg-type]

    def forward(self, x: Tensor, columns: Tensor | None = None) -> Tensor:
        weight = gather_columns(self.conv.weight, columns, x.size(1))
        return self.bn(F.conv2d(F.relu(x), weight))

    @torch.no_grad()
    def to_static(self, channels: int, columns: Tensor | None = None) -> nn.Module:
        conv = self.conv.to_static(channels)
        conv.weight.copy_(gather_columns(self.conv.weight, columns, channels))
        return nn.Sequential(nn.ReLU(), conv, copy.deepcopy(self.bn))


class SuperCell(nn.Module):
    """All one-shot weights of one cell position."""

    def __init__(
        self, position: Position, max_in: tuple[int, int], raw: int, bn: dict[str, float]
    ) -> None:
        super().__init__()
        self.position = position
        self.stride = 2 if position.reduction else 1
        f = position.filters
        self.pre0 = Preprocess(max_in[H0], f, bn)
        self.pre1: nn.Module | None = None
        if position.prev_kind == "reduce":
            self.pre1 = SharedFactorizedReduce(max_in[H1], f, bn, relu=True)
        elif position.prev_kind == "conv":
            self.pre1 = Preprocess(max_in[H1], f, bn)
        widen = position.prev_kind == "raw" and raw != f
        op_in = max(f, raw) if widen else f
        self.ops = nn.ModuleList(
            nn.ModuleDict(
                {
                    name: make_op(name, op_in, f, bn, reduction=position.reduction, widen=widen)
                    for name in OPS
                }
            )
            for _ in range(2 * 5)
        )
        self.joins = nn.ModuleList()
        if position.reduction:
            h1_in = raw if position.prev_kind == "raw" else f
            self.joins.append(SharedFactorizedReduce(f, f, bn, relu=False))
            self.joins.append(SharedFactorizedReduce(h1_in, f, bn, relu=False))

    def _stride(self, state: int) -> int:
        return self.stride if state < 2 else 1

    def forward(
        self, s0: Tensor, s1: Tensor, cell: Cell, columns: Columns = (None, None)
    ) -> Tensor:
        """``columns``: the weight columns of ``s0``'s and ``s1``'s states (``state_columns``)."""
        states: list[Tensor | None] = [None, None]
        if cell.uses(H0):
            states[H0] = self.pre0(s0, columns[H0])
        if cell.uses(H1):
            states[H1] = s1 if self.pre1 is None else self.pre1(s1, columns[H1])
        for block in range(5):
            pair = []
            for slot in (2 * block, 2 * block + 1):
                x = states[cell.inputs[slot]]
                assert x is not None
                op: SharedOp = self.ops[slot][OPS[cell.ops[slot]]]  # type: ignore[index]
                pair.append(op(x, self._stride(cell.inputs[slot])))
            states.append(combine(*pair))
        joined = []
        for state in cell.concat:
            x = states[state]
            assert x is not None
            joined.append(self.joins[state](x) if state < 2 and self.joins else x)
        return torch.cat(joined, 1)

    def to_static(
        self, cell: Cell, channels: tuple[int, int], columns: Columns = (None, None)
    ) -> StaticCell:
        pre0: nn.Module = nn.Identity()
        if cell.uses(H0):
            pre0 = self.pre0.to_static(channels[H0], columns[H0])
        pre1: nn.Module = nn.Identity()
        if cell.uses(H1) and self.pre1 is not None:
            pre1 = self.pre1.to_static(channels[H1], columns[H1])  # type: ignore[operator]
        raw = channels[H1] if self.pre1 is None else self.position.filters
        widths = [self.position.filters, raw] + [self.position.filters] * 5
        ops = [
            self.ops[slot][OPS[op]].to_static(widths[state], self._stride(state))  # type: ignore[index]
            for slot, (state, op) in enumerate(zip(cell.inputs, cell.ops, strict=True))
        ]
        joins: list[nn.Module] = [
            self.joins[state].to_static(widths[state])  # type: ignore[operator]
            if state < 2 and len(self.joins)
            else nn.Identity()
            for state in cell.concat
        ]
        return StaticCell(pre0, pre1, ops, list(cell.inputs), joins, list(cell.concat))


class AuxiliaryHead(nn.Module):
    """Training-time classifier on the cell before the second reduction (TensorFlow release).

    ReLU, average pool to 4x4 (the release pools 5x5/3 without padding, 4x4 at 224 px), 1x1
    conv to 128 + BN + ReLU, a conv over the whole 4x4 map to 768 + BN + ReLU, classifier.
    """

    def __init__(self, max_in: int, num_classes: int, bn: dict[str, float]) -> None:
        super().__init__()
        self.reduce = DynamicConv2d(max_in_channels=max_in, max_out_channels=AUX_MID,
                                    kernel_sizes=1)  # fmt: skip
        self.layers = nn.Sequential(
            nn.BatchNorm2d(AUX_MID, **bn),  # type: ignore[arg-type]
            nn.ReLU(),
            nn.Conv2d(AUX_MID, AUX_FEATURES, AUX_POOL, bias=False),
            nn.BatchNorm2d(AUX_FEATURES, **bn),  # type: ignore[arg-type]
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(AUX_FEATURES, num_classes),
        )

    def forward(self, x: Tensor, columns: Tensor | None = None) -> Tensor:
        x = F.adaptive_avg_pool2d(F.relu(x), AUX_POOL)
        return self.layers(F.conv2d(x, gather_columns(self.reduce.weight, columns, x.size(1))))


class NASNetSupernet(Supernet):
    """Stem conv + BN, one ``SuperCell`` per position, ReLU, pool, dropout, classifier."""

    def __init__(
        self, space: NASNetSpace, *, num_classes: int, in_channels: int, auxiliary_head: bool
    ) -> None:
        super().__init__()
        config = space.config
        self.space = space
        self.num_classes = num_classes
        self.in_channels = in_channels
        bn = {"eps": config.bn_eps, "momentum": config.bn_momentum}
        raw = config.stem_filters
        padding = 0 if config.stem_padding == "valid" else 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, raw, 3, config.stem_stride, padding, bias=False),
            nn.BatchNorm2d(raw, **bn),  # type: ignore[arg-type]
        )
        self.positions = positions(config, config.resolution)
        widest = [raw, raw] + [NUM_STATES * p.filters for p in self.positions]
        self.cells = nn.ModuleList(
            SuperCell(p, (widest[i + 1], widest[i]), raw, bn) for i, p in enumerate(self.positions)
        )
        last = self.positions[-1].filters
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = DynamicLinear(max_in_features=NUM_STATES * last,
                                        max_out_features=num_classes)  # fmt: skip
        self.aux_index = -1
        self.auxiliary: AuxiliaryHead | None = None
        if auxiliary_head:
            reductions = [p.index for p in self.positions if p.reduction]
            self.aux_index = reductions[-1] - 1
            width = NUM_STATES * self.positions[self.aux_index].filters
            self.auxiliary = AuxiliaryHead(width, num_classes, bn)
        self.aux_logits: Tensor | None = None
        self._init_weights()
        self.set_active(space.reference_archs()["max"])

    @torch.no_grad()
    def _init_weights(self) -> None:
        """He (fan-out) normal convs; unit BN; uniform classifier.

        A depthwise conv's fan-out is its kernel area (one output per channel, as timm counts
        it): counting all channels made its weights sqrt(C) times too small, so, BN following,
        its gradients and its effective learning rate were that much and C times too large.
        """
        for module in self.modules():
            if isinstance(module, SlicedConv | DynamicConv2d | nn.Conv2d):
                weight = module.weight
                fan_out = weight.size(0) * weight[0, 0].numel()
                if getattr(module, "depthwise", False):
                    fan_out = weight[0, 0].numel()
                weight.normal_(0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, DynamicLinear | nn.Linear):
                fan_in = module.weight.size(1)
                module.weight.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.zero_()

    # --- the active subnet -------------------------------------------------------------------
    def set_active(self, arch: NASNetArch) -> None:
        self.space.check_member(arch)
        self._cells = {name: Cell.of(arch, name) for name in CELLS}
        self._active_arch = arch

    @property
    def active_arch(self) -> NASNetArch:
        return self._active_arch

    def forward(self, x: Tensor) -> Tensor:
        current = self.stem(x)
        previous = current
        columns: Columns = (None, None)  # of (current, previous): the stem's are leading
        self.aux_logits = None
        for index, cell in enumerate(self.cells):
            genotype = self._cells[cell.position.cell]
            previous, current = current, cell(current, previous, genotype, columns)
            columns = (state_columns(genotype.concat, cell.position.filters), columns[0])
            if index == self.aux_index and self.auxiliary is not None and self.training:
                self.aux_logits = self.auxiliary(current, columns[0])
        features = self.dropout(torch.flatten(F.adaptive_avg_pool2d(F.relu(current), 1), 1))
        classifier = self.classifier
        weight = gather_columns(classifier.weight, columns[0], features.size(1))
        return F.linear(features, weight, classifier.bias)

    #: No op runs a channel prefix of its weights: a cell's output width is a number of
    #: joined states, whose order is fixed, so there is nothing to sort.
    shrinks_channels = False

    def reorder_channels(self) -> None:
        """Nothing to sort (see ``shrinks_channels``)."""

    # --- extraction --------------------------------------------------------------------------
    def extract(self, arch: NASNetArch) -> StaticNASNet:
        """Static model of ``arch`` (no auxiliary head); the supernet is left unchanged."""
        self.space.check_member(arch)
        cells = {name: Cell.of(arch, name) for name in CELLS}
        raw = self.space.config.stem_filters
        widths = [raw, raw]
        columns: Columns = (None, None)
        static: list[StaticCell] = []
        for cell in self.cells:
            genotype = cells[cell.position.cell]
            static.append(cell.to_static(genotype, (widths[-1], widths[-2]), columns))
            widths.append(len(genotype.concat) * cell.position.filters)
            columns = (state_columns(genotype.concat, cell.position.filters), columns[0])
        classifier = self.classifier.to_static(widths[-1])
        with torch.no_grad():
            classifier.weight.copy_(gather_columns(self.classifier.weight, columns[0], widths[-1]))
        head = nn.Sequential(
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            copy.deepcopy(self.dropout),
            classifier,
        )
        return StaticNASNet(copy.deepcopy(self.stem), static, head).train(self.training)
