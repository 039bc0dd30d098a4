"""The NASNet network around the cells: positions, concrete layers and their cost (torch-free).

ImageNet layout of the TensorFlow release (``_imagenet_stem`` and ``_build_nasnet_base``): a
3x3/2 stem conv without padding + BN, two reduction cells at F/4 and F/2 filters ("stem
cells"), then N normal cells at F, a reduction cell at 2F, N normal cells at 2F, a reduction
cell at 4F, N normal cells at 4F; ReLU, global pool, dropout, classifier. A cell's inputs are
the two previous cells' outputs: h_i always goes through ReLU-1x1 conv-BN to F filters; h_{i-1}
through a factorized reduction when its spatial size differs, else ReLU-1x1 conv-BN; the
first stem cell has no h_{i-1} and uses its raw input as that state (TensorFlow's
``prev_layer=None``). Ops on h_i / h_{i-1} in a reduction cell have stride 2.

One set of spec builders serves ``blocks()``, the vectorised cost tables and the supernet, so
what is counted is what is built.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from search_spaces._nasnet_genotype import (
    CELLS,
    NUM_BLOCKS,
    OP_LAYERS,
    OPS,
    Cell,
    input_patterns,
)
from search_spaces.blocks import BlockSpec, Int, block_cost, linear_cost

PrevKind = Literal["raw", "reduce", "conv"]
#: Input classes of an op: the cell's two inputs, or a block output (all blocks cost the same).
H0, H1, BLOCK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class NASNetConfig:
    """Macro-architecture of one preset: N cells per stage, F filters, stem and head."""

    name: str
    preset: str
    num_cells: int
    filters: int
    stem_filters: int
    stem_stride: int
    stem_padding: Literal["valid", "same"]
    resolution: int
    num_classes: int
    dropout: float
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("num_cells", "filters", "stem_filters", "stem_stride", "resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.filters % 4:
            raise ValueError(
                f"filters must be a multiple of 4 (stem cells use F/4), got {self.filters}"
            )
        if self.stem_padding not in ("valid", "same"):
            raise ValueError(f"stem_padding must be 'valid' or 'same', got {self.stem_padding!r}")


class Position(NamedTuple):
    """One cell in the stack."""

    index: int
    cell: str  # "normal" or "reduce"
    filters: int
    in_size: int  # side of h_i (and of the raw state of the first cell)
    prev_size: int  # side of h_{i-1}'s source
    out_size: int
    prev_kind: PrevKind

    @property
    def reduction(self) -> bool:
        return self.cell == "reduce"


def stem_output_size(config: NASNetConfig, resolution: int) -> int:
    pad = 0 if config.stem_padding == "valid" else 1
    return (resolution + 2 * pad - 3) // config.stem_stride + 1


def positions(config: NASNetConfig, resolution: int) -> tuple[Position, ...]:
    f = config.filters
    cells = [("reduce", f // 4), ("reduce", f // 2)]
    for stage in range(3):
        if stage:
            cells.append(("reduce", f * 2**stage))
        cells += [("normal", f * 2**stage)] * config.num_cells
    size = prev = stem_output_size(config, resolution)
    out: list[Position] = []
    for index, (cell, filters) in enumerate(cells):
        out_size = (size - 1) // 2 + 1 if cell == "reduce" else size
        kind: PrevKind = "raw" if index == 0 else "reduce" if prev != size else "conv"
        out.append(Position(index, cell, filters, size, prev, out_size, kind))
        prev, size = size, out_size
    return tuple(out)


# --- concrete layers -------------------------------------------------------------------------
def stem_spec(config: NASNetConfig, in_channels: int, resolution: int) -> BlockSpec:
    op = "conv_valid" if config.stem_padding == "valid" else "conv"
    return BlockSpec(
        op, in_channels, config.stem_filters, 3, config.stem_stride, resolution, bn=True
    )


def preprocess_spec(position: Position, state: int, channels: int) -> BlockSpec | None:
    """ReLU-1x1-BN of h_i, and of h_{i-1} unless raw (or factorized-reduced when larger)."""
    f = position.filters
    if state == H0:
        return BlockSpec("relu_conv_bn", channels, f, 1, 1, position.in_size, act="relu", bn=True)
    if position.prev_kind == "raw":
        return None
    if position.prev_kind == "reduce":
        return BlockSpec("factorized_reduce", channels, f, 1, 2, position.prev_size, act="relu",
                         bn=True)  # fmt: skip
    return BlockSpec("relu_conv_bn", channels, f, 1, 1, position.prev_size, act="relu", bn=True)


def op_input(position: Position, state: int, raw_channels: int) -> tuple[int, int, int]:
    """(channels, stride, input side) of an op reading ``state``."""
    if state >= 2:
        return position.filters, 1, position.out_size
    channels = raw_channels if state == H1 and position.prev_kind == "raw" else position.filters
    return channels, 2 if position.reduction else 1, position.in_size


def op_specs(position: Position, op: int, state: int, raw_channels: int) -> list[BlockSpec]:
    """The layers of ``OPS[op]`` applied to ``state`` at ``position`` (empty for a free op)."""
    c, stride, size = op_input(position, state, raw_channels)
    f = position.filters
    kind, k = OP_LAYERS[OPS[op]]
    if kind == "identity":
        if stride == 1 and c == f:
            return []
        return [BlockSpec("relu_conv_bn", c, f, 1, stride, size, act="relu", bn=True)]
    if kind.endswith("pool"):
        pool = BlockSpec(kind, c, c, k, stride, size)
        if c == f:
            return [pool]
        out = (size - 1) // stride + 1
        return [pool, BlockSpec("conv", c, f, 1, 1, out, bn=True)]
    return [BlockSpec(kind, c, f, k, stride, size, act="relu", bn=True)]


def concat_spec(position: Position, state: int, raw_channels: int) -> BlockSpec | None:
    """A reduction cell halves its inputs before joining them (factorized reduction, no ReLU)."""
    if not position.reduction or state >= 2:
        return None
    c = raw_channels if state == H1 and position.prev_kind == "raw" else position.filters
    return BlockSpec("factorized_reduce", c, position.filters, 1, 2, position.in_size, bn=True)


def head_specs(channels: int, size: int, num_classes: int) -> list[BlockSpec]:
    return [
        BlockSpec("pool", channels, channels, size, 1, size, act="relu"),
        BlockSpec("linear", channels, num_classes, 1, 1, 1, bias=True),
    ]


def cell_specs(
    position: Position, cell: Cell, in_channels: tuple[int, int], raw_channels: int
) -> list[BlockSpec]:
    """Everything one cell computes for ``cell``, in execution order."""
    specs: list[BlockSpec] = []
    for state in (H0, H1):
        spec = preprocess_spec(position, state, in_channels[state])
        if spec is not None and cell.uses(state):
            specs.append(spec)
    for state, op in zip(cell.inputs, cell.ops, strict=True):
        specs += op_specs(position, op, state, raw_channels)
    for state in cell.concat:
        spec = concat_spec(position, state, raw_channels)
        if spec is not None:
            specs.append(spec)
    return specs


def _sum_cost(specs: Sequence[BlockSpec]) -> tuple[int, int]:
    macs = params = 0
    for spec in specs:
        m, p = block_cost(spec)
        macs += m
        params += p
    return macs, params


# --- fast cost model -------------------------------------------------------------------------
class CellChoices(NamedTuple):
    """What a cell's cost depends on, as ints (one arch) or int arrays (a batch)."""

    width: Int  # concatenated states (output = width x F)
    uses_h0: Int
    uses_h1: Int
    joins_h0: Int  # concatenates h_i (reduction cells pay a factorized reduction)
    joins_h1: Int
    op_macs: Int  # ops, summed over the cell's positions
    op_params: Int


class CostModel:
    """Cost tables of one preset at one resolution; exact, checked against ``blocks``."""

    def __init__(
        self, config: NASNetConfig, resolution: int, in_channels: int, num_classes: int
    ) -> None:
        self.config = config
        self.resolution = resolution
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.positions = positions(config, resolution)
        self.stem = block_cost(stem_spec(config, in_channels, resolution))
        raw = config.stem_filters
        # [cell, op, input class] -> (macs, params) summed over that cell's positions
        self.op_table = np.zeros((len(CELLS), len(OPS), 3, 2), dtype=np.int64)
        for position in self.positions:
            cell = CELLS.index(position.cell)
            for op in range(len(OPS)):
                for state in (H0, H1, BLOCK):
                    self.op_table[cell, op, state] += _sum_cost(op_specs(position, op, state, raw))

    def cell_choices(self, name: str, inputs: Int, ops: Int, concat_bits: Int) -> CellChoices:
        """Vectorised: ``inputs``/``ops`` are ``[N, 10]``, ``concat_bits`` ``[N, 6]``."""
        inputs, ops = np.asarray(inputs), np.asarray(ops)
        bits = np.pad(np.asarray(concat_bits, dtype=bool), ((0, 0), (0, 1)))  # last block: no bit
        read = (inputs[:, :, None] == np.arange(2 + NUM_BLOCKS)).any(axis=1)
        joined = bits | ~read
        joined[:, :2] = bits[:, :2]
        table = self.op_table[CELLS.index(name)]
        cost = table[ops, np.minimum(inputs, BLOCK)].sum(axis=1)
        return CellChoices(
            joined.sum(axis=1),
            (read[:, H0] | joined[:, H0]).astype(np.int64),
            (read[:, H1] | joined[:, H1]).astype(np.int64),
            joined[:, H0].astype(np.int64),
            joined[:, H1].astype(np.int64),
            cost[:, 0],
            cost[:, 1],
        )

    def total(self, normal: CellChoices, reduce: CellChoices) -> tuple[Int, Int]:
        """(MACs, params) of the network; works on ints and on arrays alike."""
        chosen = {"normal": normal, "reduce": reduce}
        raw = self.config.stem_filters
        macs: Int = self.stem[0] + normal.op_macs + reduce.op_macs
        params: Int = self.stem[1] + normal.op_params + reduce.op_params
        outputs: list[Int] = [raw, raw]  # channels of h_{i-1}, h_i sources for position 0
        for position in self.positions:
            choice = chosen[position.cell]
            f = position.filters
            pre0 = preprocess_spec(position, H0, 1)
            pre1 = preprocess_spec(position, H1, 1)
            assert pre0 is not None
            m, p = _linear_cost(pre0, outputs[-1])
            macs, params = macs + m * choice.uses_h0, params + p * choice.uses_h0
            if pre1 is not None:
                m, p = _linear_cost(pre1, outputs[-2])
                macs, params = macs + m * choice.uses_h1, params + p * choice.uses_h1
            for state, joins in ((H0, choice.joins_h0), (H1, choice.joins_h1)):
                spec = concat_spec(position, state, raw)
                if spec is not None:
                    m, p = block_cost(spec)
                    macs, params = macs + m * joins, params + p * joins
            outputs.append(choice.width * f)
        m, p = linear_cost(outputs[-1], self.num_classes, True)
        return macs + m, params + p


def _linear_cost(spec: BlockSpec, channels: Int) -> tuple[Int, Int]:
    """Cost of a 1x1 preprocessing layer for ``channels`` inputs (linear in them)."""
    m, p = block_cost(spec._replace(in_channels=1))
    bn = 2 * spec.out_channels
    return m * channels, (p - bn) * channels + bn


# --- exact extremes --------------------------------------------------------------------------
def _best_op(table: np.ndarray, largest: bool) -> list[int]:
    """Per input class, the cheapest (or dearest) op by MACs, then params."""
    best = []
    for cls in range(table.shape[1]):
        order = np.lexsort((table[:, cls, 1], table[:, cls, 0]))
        best.append(int(order[-1] if largest else order[0]))
    return best


Genotype = dict[str, tuple[int, ...]]


def _cell_candidates(table: np.ndarray, largest: bool) -> list[tuple[CellChoices, Genotype]]:
    """Per distinct (width, uses, joins) of a cell, its cheapest (dearest) genotype."""
    best = _best_op(table, largest)
    sign = -1 if largest else 1
    entries: dict[tuple[int, ...], tuple[tuple[int, int], CellChoices, Genotype]] = {}
    for pattern in input_patterns():
        classes = [min(state, BLOCK) for state in pattern.example]
        ops = tuple(best[c] for c in classes)
        macs, params = (int(v) for v in table[list(ops), classes].sum(axis=0))
        read = [m for m in range(NUM_BLOCKS) if pattern.consumed_blocks >> m & 1]
        loose = NUM_BLOCKS - len(read)
        for j0, j1, extra in itertools.product((0, 1), (0, 1), range(len(read) + 1)):
            uses_h0, uses_h1 = int(pattern.reads_h0 > 0 or j0), int(pattern.reads_h1 > 0 or j1)
            choice = CellChoices(loose + j0 + j1 + extra, uses_h0, uses_h1, j0, j1, macs, params)
            rank = (sign * macs, sign * params)
            key = tuple(choice[:5])
            if key not in entries or rank < entries[key][0]:
                bits = (j0, j1, *(int(m in read[:extra]) for m in range(NUM_BLOCKS - 1)))
                genotype = {"inputs": pattern.example, "ops": ops, "concat": bits}
                entries[key] = (rank, choice, genotype)
    return [(choice, genotype) for _, choice, genotype in entries.values()]


def extreme_cells(model: CostModel, largest: bool) -> dict[str, Genotype]:
    """The normal and reduction cells of the smallest (largest) network, by MACs then params.

    A cell's cost depends on its wiring only through how many ops read h_i and h_{i-1}, which
    blocks are read (the others are loose ends) and which states are joined: every wiring
    pattern is enumerated, each slot takes the best op for its input class, and the two cells
    are combined exhaustively (they interact only through their output widths).
    """
    normal = _cell_candidates(model.op_table[CELLS.index("normal")], largest)
    reduce = _cell_candidates(model.op_table[CELLS.index("reduce")], largest)
    n = CellChoices(*(np.repeat([c[i] for c, _ in normal], len(reduce)) for i in range(7)))
    r = CellChoices(*(np.tile([c[i] for c, _ in reduce], len(normal)) for i in range(7)))
    macs, params = model.total(n, r)
    order = np.lexsort((params, macs))
    pick = int(order[-1] if largest else order[0])
    return {"normal": normal[pick // len(reduce)][1], "reduce": reduce[pick % len(reduce)][1]}
