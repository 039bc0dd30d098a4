"""NASNet ops with one-shot shared weights, and the static modules extraction builds.

Every (cell position, block slot, op) owns one op module whose weights all archs using that
op there share (ENAS-style one-shot weights, arXiv:1802.03268). An op reads different states
in different archs, so its stride (2 on a reduction cell's inputs) is chosen per call, and its
first conv may see the raw stem output of the first cell: the input width is the first
channels of the weight. ``to_static`` returns plain torch layers with copied weights.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops import DynamicConv2d, leading_slice
from search_spaces._nasnet_genotype import OP_LAYERS

Pair = tuple[int, int]


@lru_cache(maxsize=4096)
def state_columns(concat: tuple[int, ...], filters: int) -> Tensor | None:
    """Input channels of a layer reading a cell output that joins ``concat`` (states of
    ``filters`` channels each): state ``s`` always meets weight columns ``s*F .. (s+1)*F``.

    A cell output's layout depends on the arch, so a leading slice would hand, say, the columns
    trained on h_i in one arch to block 4 in another, and the shared 1x1 convs and classifier
    reading cell outputs could never serve every subnet at once. ``None`` where the joined
    states are ``0..k-1`` (the leading slice is the same columns).
    """
    if concat == tuple(range(len(concat))):
        return None
    return torch.tensor([s * filters + c for s in concat for c in range(filters)])


def combine(a: Tensor, b: Tensor) -> Tensor:
    """A block's output: the mean of its two ops' outputs.

    NASNet adds them. Ops ending in BN give unit-scale outputs, but identities and pools pass
    their input's scale on, so in a sum chains of them grow it (the smallest arch's blocks
    reach ten times a BN output) and the classifier, the one layer no BN follows, sees features
    whose scale depends on the arch. Its shared weights then take steps sized for the largest
    scale and the supernet diverges. The mean keeps every state at its inputs' scale; a
    constant factor before layers that end in BN, it changes no network's capacity.
    """
    return (a + b) * 0.5


def gather_columns(weight: Tensor, columns: Tensor | None, width: int) -> Tensor:
    """``weight``'s input columns ``columns`` (dim 1), or its first ``width`` ones."""
    if columns is None:
        return leading_slice(weight, (weight.size(0), width))
    return weight.index_select(1, columns.to(weight.device))


class SlicedConv(nn.Module):
    """Conv over the first ``x.size(1)`` input channels of its weight; stride chosen per call."""

    def __init__(
        self,
        max_in: int,
        out: int,
        kernel: Pair,
        *,
        depthwise: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.max_in = max_in
        self.out = max_in if depthwise else out
        self.kernel = kernel
        self.dilation = dilation
        self.padding = (dilation * (kernel[0] // 2), dilation * (kernel[1] // 2))
        shape = (max_in, 1, *kernel) if depthwise else (out, max_in, *kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _weight(self, channels: int) -> Tensor:
        return leading_slice(self.weight, (channels,) if self.depthwise else (self.out, channels))

    def forward(self, x: Tensor, stride: Pair) -> Tensor:
        c = x.size(1)
        groups = c if self.depthwise else 1
        return F.conv2d(x, self._weight(c), None, stride, self.padding, self.dilation, groups)

    @torch.no_grad()
    def to_static(self, channels: int, stride: Pair) -> nn.Conv2d:
        out = channels if self.depthwise else self.out
        conv = nn.Conv2d(channels, out, self.kernel, stride, self.padding, self.dilation,
                         groups=channels if self.depthwise else 1, bias=False)  # fmt: skip
        conv.weight.copy_(self._weight(channels))
        return conv


def _bn(channels: int, bn: dict[str, float]) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, **bn)  # type: ignore[arg-type]


class SharedOp(nn.Module):
    """Base of the one-shot ops: ``forward(x, stride)`` and ``to_static(channels, stride)``."""

    def forward(self, x: Tensor, stride: int) -> Tensor:
        raise NotImplementedError

    def to_static(self, channels: int, stride: int) -> nn.Module:
        raise NotImplementedError


class ReLUConvBN(SharedOp):
    """ReLU, kxk conv (optionally dilated), BN: NASNet's 1x1, 3x3 and dilated 3x3 convs."""

    def __init__(self, max_in: int, out: int, kernel: int, bn: dict[str, float],
                 dilation: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.conv = SlicedConv(max_in, out, (kernel, kernel), dilation=dilation)
        self.bn = _bn(out, bn)

    def forward(self, x: Tensor, stride: int) -> Tensor:
        return self.bn(self.conv(F.relu(x), (stride, stride)))

    def to_static(self, channels: int, stride: int) -> nn.Module:
        conv = self.conv.to_static(channels, (stride, stride))
        return nn.Sequential(nn.ReLU(), conv, copy.deepcopy(self.bn))


class FactorizedConv(SharedOp):
    """ReLU, 1xk conv (strided along the width), kx1 conv (along the height), BN."""

    def __init__(self, max_in: int, out: int, kernel: int, bn: dict[str, float]) -> None:
        super().__init__()
        self.row = SlicedConv(max_in, out, (1, kernel))
        self.column = SlicedConv(out, out, (kernel, 1))
        self.bn = _bn(out, bn)

    def forward(self, x: Tensor, stride: int) -> Tensor:
        x = self.row(F.relu(x), (1, stride))
        return self.bn(self.column(x, (stride, 1)))

    def to_static(self, channels: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.ReLU(),
            self.row.to_static(channels, (1, stride)),
            self.column.to_static(self.column.max_in, (stride, 1)),
            copy.deepcopy(self.bn),
        )


class SeparableStack(SharedOp):
    """(ReLU, depthwise kxk, pointwise, BN) twice, the first strided: NASNet-A's separable op."""

    def __init__(self, max_in: int, out: int, kernel: int, bn: dict[str, float]) -> None:
        super().__init__()
        k = (kernel, kernel)
        self.depthwise1 = SlicedConv(max_in, max_in, k, depthwise=True)
        self.pointwise1 = SlicedConv(max_in, out, (1, 1))
        self.bn1 = _bn(out, bn)
        self.depthwise2 = SlicedConv(out, out, k, depthwise=True)
        self.pointwise2 = SlicedConv(out, out, (1, 1))
        self.bn2 = _bn(out, bn)

    def forward(self, x: Tensor, stride: int) -> Tensor:
        x = self.depthwise1(F.relu(x), (stride, stride))
        x = self.bn1(self.pointwise1(x, (1, 1)))
        x = self.depthwise2(F.relu(x), (1, 1))
        return self.bn2(self.pointwise2(x, (1, 1)))

    def to_static(self, channels: int, stride: int) -> nn.Module:
        out = self.pointwise2.out
        return nn.Sequential(
            nn.ReLU(),
            self.depthwise1.to_static(channels, (stride, stride)),
            self.pointwise1.to_static(channels, (1, 1)),
            copy.deepcopy(self.bn1),
            nn.ReLU(),
            self.depthwise2.to_static(out, (1, 1)),
            self.pointwise2.to_static(out, (1, 1)),
            copy.deepcopy(self.bn2),
        )


class Pool(SharedOp):
    """kxk average (padding not counted) or max pool; a 1x1 conv + BN where widths differ."""

    def __init__(self, kind: str, kernel: int, max_in: int, out: int, bn: dict[str, float],
                 project: bool) -> None:  # fmt: skip
        super().__init__()
        self.kind = kind
        self.kernel = kernel
        self.out = out
        self.project = SlicedConv(max_in, out, (1, 1)) if project else None
        self.bn = _bn(out, bn) if project else None

    def _pool(self, stride: int) -> nn.Module:
        if self.kind == "avg_pool":
            return nn.AvgPool2d(self.kernel, stride, self.kernel // 2, count_include_pad=False)
        return nn.MaxPool2d(self.kernel, stride, self.kernel // 2)

    def forward(self, x: Tensor, stride: int) -> Tensor:
        pad = self.kernel // 2
        if self.kind == "avg_pool":
            x = F.avg_pool2d(x, self.kernel, stride, pad, count_include_pad=False)
        else:
            x = F.max_pool2d(x, self.kernel, stride, pad)
        if x.size(1) != self.out and self.project is not None and self.bn is not None:
            x = self.bn(self.project(x, (1, 1)))
        return x

    def to_static(self, channels: int, stride: int) -> nn.Module:
        if channels == self.out or self.project is None or self.bn is None:
            return self._pool(stride)
        conv = self.project.to_static(channels, (1, 1))
        return nn.Sequential(self._pool(stride), conv, copy.deepcopy(self.bn))


class Identity(SharedOp):
    """The identity; ReLU-1x1 conv-BN where it must stride or change the width."""

    def __init__(self, max_in: int, out: int, bn: dict[str, float], project: bool) -> None:
        super().__init__()
        self.out = out
        self.project = ReLUConvBN(max_in, out, 1, bn) if project else None

    def forward(self, x: Tensor, stride: int) -> Tensor:
        if stride == 1 and x.size(1) == self.out:
            return x
        assert self.project is not None, "identity cannot stride or change width here"
        return self.project(x, stride)

    def to_static(self, channels: int, stride: int) -> nn.Module:
        if stride == 1 and channels == self.out:
            return nn.Identity()
        assert self.project is not None
        return self.project.to_static(channels, stride)


def make_op(
    name: str, max_in: int, out: int, bn: dict[str, float], *, reduction: bool, widen: bool
) -> SharedOp:
    """The one-shot module of ``name`` (an entry of ``OPS``) at one cell position and slot.

    ``widen``: some state it may read is not ``out`` wide (the raw input of the first cell).
    """
    kind, k = OP_LAYERS[name]
    if kind == "identity":
        return Identity(max_in, out, bn, project=reduction or widen)
    if kind.endswith("pool"):
        return Pool(kind, k, max_in, out, bn, project=widen)
    if kind == "sep_conv_stack":
        return SeparableStack(max_in, out, k, bn)
    if kind == "relu_fac_conv_bn":
        return FactorizedConv(max_in, out, k, bn)
    return ReLUConvBN(max_in, out, k, bn, dilation=2 if kind == "relu_dil_conv_bn" else 1)


# --- factorized reduction --------------------------------------------------------------------
class FactorizedReduce(nn.Module):
    """Halve the side with two 1x1/2 convs on grids offset by one pixel, concat, BN.

    TensorFlow's ``factorized_reduction``: the second path sees the input shifted by one
    pixel (zero-padded at the bottom/right), so together the paths read every other pixel of
    both grids. A leading ReLU where NASNet preprocesses a cell input.
    """

    def __init__(self, conv_a: nn.Conv2d, conv_b: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool):
        super().__init__()
        self.relu = relu
        self.conv_a = conv_a
        self.conv_b = conv_b
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        if self.relu:
            x = F.relu(x)
        shifted = F.pad(x, [0, 1, 0, 1])[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], 1))


class SharedFactorizedReduce(nn.Module):
    """``FactorizedReduce`` whose input width is the first channels of its weights."""

    def __init__(self, max_in: int, out: int, bn: dict[str, float], relu: bool) -> None:
        super().__init__()
        self.relu = relu
        half = out // 2
        self.conv_a = DynamicConv2d(max_in_channels=max_in, max_out_channels=half,
                                    kernel_sizes=1, stride=2)  # fmt: skip
        self.conv_b = DynamicConv2d(max_in_channels=max_in, max_out_channels=out - half,
                                    kernel_sizes=1, stride=2)  # fmt: skip
        self.bn = _bn(out, bn)

    def forward(self, x: Tensor, columns: Tensor | None = None) -> Tensor:
        """``columns``: the weights' input channels of ``x`` (``state_columns``), else leading."""
        if self.relu:
            x = F.relu(x)
        shifted = F.pad(x, [0, 1, 0, 1])[:, :, 1:, 1:]
        c = x.size(1)
        a = F.conv2d(x, gather_columns(self.conv_a.weight, columns, c), None, 2)
        b = F.conv2d(shifted, gather_columns(self.conv_b.weight, columns, c), None, 2)
        return self.bn(torch.cat([a, b], 1))

    @torch.no_grad()
    def to_static(self, channels: int, columns: Tensor | None = None) -> FactorizedReduce:
        conv_a, conv_b = self.conv_a.to_static(channels), self.conv_b.to_static(channels)
        conv_a.weight.copy_(gather_columns(self.conv_a.weight, columns, channels))
        conv_b.weight.copy_(gather_columns(self.conv_b.weight, columns, channels))
        return FactorizedReduce(conv_a, conv_b, copy.deepcopy(self.bn), self.relu)


# --- static network --------------------------------------------------------------------------
class StaticCell(nn.Module):
    """A fixed NASNet cell: preprocessing, 10 ops reading ``inputs``, states joined by ``concat``.

    ``pre0``/``pre1`` are ``nn.Identity`` where the state is raw or unused; ``joins`` holds, per
    joined state, the factorized reduction a reduction cell applies to its inputs (else
    ``nn.Identity``).
    """

    def __init__(
        self,
        pre0: nn.Module,
        pre1: nn.Module,
        ops: list[nn.Module],
        inputs: list[int],
        joins: list[nn.Module],
        concat: list[int],
    ) -> None:
        super().__init__()
        self.pre0 = pre0
        self.pre1 = pre1
        self.ops = nn.ModuleList(ops)
        self.inputs: list[int] = list(inputs)
        self.joins = nn.ModuleList(joins)
        self.concat: list[int] = list(concat)

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        partial = states[0]
        for j, op in enumerate(self.ops):
            out = op(states[self.inputs[j]])
            if j % 2 == 0:
                partial = out
            else:
                states.append(combine(partial, out))
        joined: list[Tensor] = []
        for i, join in enumerate(self.joins):
            joined.append(join(states[self.concat[i]]))
        return torch.cat(joined, 1)


class StaticNASNet(nn.Module):
    """stem -> cells (each reads the two previous outputs) -> ReLU, pool, dropout, classifier."""

    def __init__(self, stem: nn.Module, cells: list[StaticCell], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        current = self.stem(x)
        previous = current  # the first cell reads its raw input as h_{i-1}
        for cell in self.cells:
            previous, current = current, cell(current, previous)
        return self.head(current)
