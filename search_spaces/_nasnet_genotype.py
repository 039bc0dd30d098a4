"""NASNet cell genotypes: the op list, the arch model and its gene layout (torch-free).

A cell has B = 5 blocks; block j adds two op outputs, each op applied to one of the cell's
states: 0 = h_i (the previous cell's output), 1 = h_{i-1} (the one before), 2 + m = the output
of block m < j. The state numbering and ``inputs``/``ops`` order are those of the TensorFlow
release (``hiddenstate_indices`` / ``operations`` in ``nasnet_utils.py``), so the NASNet-A
cells read exactly as published. ``concat`` holds one bit per state that can be read (h_i,
h_{i-1}, blocks 0-3; block 4 is never read): blocks whose output no block consumes are always
concatenated into the cell output (the paper's rule); a bit of 1 also concatenates a consumed
state, which the published NASNet-A
cells do (h_{i-1} in the normal cell, block 1 in the reduction cell). The bit of a block that
nothing consumes changes nothing, so ids normalise it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

if TYPE_CHECKING:
    from search_spaces.nasnet import NASNetSpace

#: The NASNet op list (arXiv:1707.07012, section 3), in the paper's order; arch ops are indices.
OPS: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
OP_INDEX = {name: i for i, name in enumerate(OPS)}
#: The layer kind (a ``BlockSpec.op``) and kernel size each op is built from.
OP_LAYERS: dict[str, tuple[str, int]] = {
    "identity": ("identity", 1),
    "conv_1x3_3x1": ("relu_fac_conv_bn", 3),
    "conv_1x7_7x1": ("relu_fac_conv_bn", 7),
    "dil_conv_3x3": ("relu_dil_conv_bn", 3),
    "avg_pool_3x3": ("avg_pool", 3),
    "max_pool_3x3": ("max_pool", 3),
    "max_pool_5x5": ("max_pool", 5),
    "max_pool_7x7": ("max_pool", 7),
    "conv_1x1": ("relu_conv_bn", 1),
    "conv_3x3": ("relu_conv_bn", 3),
    "sep_conv_3x3": ("sep_conv_stack", 3),
    "sep_conv_5x5": ("sep_conv_stack", 5),
    "sep_conv_7x7": ("sep_conv_stack", 7),
}
OP_HELP = ", ".join(f"{i}={name}" for i, name in enumerate(OPS))
NUM_BLOCKS = 5
NUM_SLOTS = 2 * NUM_BLOCKS
NUM_STATES = 2 + NUM_BLOCKS
#: States with a concat bit: all but the last block, which nothing can read (always joined).
NUM_BITS = NUM_STATES - 1
CELLS = ("normal", "reduce")
FIELDS = tuple(f"{cell}_{part}" for cell in CELLS for part in ("inputs", "ops", "concat"))


def _space_of(arch: NASNetArch) -> NASNetSpace:
    from search_spaces._registry import get  # the registry imports the space modules

    return get(arch.space, preset=arch.preset)  # type: ignore[return-value]


class NASNetArch(BaseModel):
    """A normal and a reduction cell (10 inputs, 10 ops, 6 concat bits each).

    Ops may be given by name (``"sep_conv_5x5"``) or index; they are stored as indices into
    ``OPS``. Equality compares raw fields; ``id`` ignores the concat bits of loose ends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    preset: str
    resolution: int
    normal_inputs: tuple[int, ...]
    normal_ops: tuple[int, ...]
    normal_concat: tuple[int, ...]
    reduce_inputs: tuple[int, ...]
    reduce_ops: tuple[int, ...]
    reduce_concat: tuple[int, ...]

    @field_validator("normal_ops", "reduce_ops", mode="before")
    @classmethod
    def _op_names_to_indices(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list | tuple):
            return value
        out = []
        for position, op in enumerate(value):
            if isinstance(op, str):
                if op not in OP_INDEX:
                    raise ValueError(
                        f"{info.field_name}[{position}] = {op!r} is not allowed; allowed values: "
                        f"{list(range(len(OPS)))} ({OP_HELP})"
                    )
                op = OP_INDEX[op]
            out.append(op)
        return tuple(out)

    @model_validator(mode="after")
    def _check_against_space(self) -> Self:
        _space_of(self).check_arch(self)
        return self

    @property
    def id(self) -> str:
        """Stable id of the network (16 hex chars); see ``SearchSpace.arch_id``."""
        return _space_of(self).arch_id(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``space.arch_from_dict`` (or the model itself) reads it back."""
        return self.model_dump(mode="json")

    def op_names(self, cell: str) -> list[str]:
        """The ops of ``cell`` (``"normal"`` or ``"reduce"``) by name."""
        return [OPS[i] for i in getattr(self, f"{cell}_ops")]


class Gene(NamedTuple):
    field: str
    position: int
    choices: tuple[int, ...]


def _genes(resolutions: Sequence[int]) -> list[Gene]:
    genes = [Gene("resolution", 0, tuple(resolutions))]
    for cell in CELLS:
        genes += [Gene(f"{cell}_inputs", s, tuple(range(s // 2 + 2))) for s in range(NUM_SLOTS)]
        genes += [Gene(f"{cell}_ops", s, tuple(range(len(OPS)))) for s in range(NUM_SLOTS)]
        genes += [Gene(f"{cell}_concat", s, (0, 1)) for s in range(NUM_BITS)]
    return genes


class NASNetLayout:
    """Gene tables and the vectorised helpers over ``[N, G]`` gene values."""

    def __init__(self, resolutions: Sequence[int]) -> None:
        self.genes: tuple[Gene, ...] = tuple(_genes(resolutions))
        genes = self.genes
        self.num_genes = len(genes)
        self.field_slices: dict[str, slice] = {"resolution": slice(0, 1)}
        start = 1
        for name in FIELDS:
            size = NUM_BITS if name.endswith("concat") else NUM_SLOTS
            self.field_slices[name] = slice(start, start + size)
            start += size
        self.allowed: tuple[frozenset[int], ...] = tuple(frozenset(g.choices) for g in genes)
        self.num_choices = np.array([len(g.choices) for g in genes], dtype=np.int64)
        self.choice_table = np.zeros((self.num_genes, int(self.num_choices.max())), np.int64)
        for i, g in enumerate(genes):
            self.choice_table[i, : len(g.choices)] = g.choices
        self.gene_range = np.arange(self.num_genes)
        self.value_index = np.full((self.num_genes, max(max(g.choices) for g in genes) + 1), -1)
        for i, g in enumerate(genes):
            self.value_index[i, list(g.choices)] = np.arange(len(g.choices))
        self.canonical = self.choice_table[:, 0].copy()
        self.encoded = self.num_choices > 1
        sizes = np.where(self.encoded, self.num_choices, 0)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.encoding_dim = int(sizes.sum())

    def values_of(self, arch: NASNetArch) -> list[int]:
        row = [arch.resolution]
        for name in FIELDS:
            row.extend(getattr(arch, name))
        return row

    def values(self, archs: Sequence[NASNetArch]) -> np.ndarray:
        rows = [self.values_of(a) for a in archs]
        return np.array(rows, dtype=np.int64).reshape(len(archs), self.num_genes)

    def fields_of(self, row: Sequence[int]) -> dict[str, Any]:
        values = [int(v) for v in row]
        out: dict[str, Any] = {"resolution": values[0]}
        for name in FIELDS:
            out[name] = tuple(values[self.field_slices[name]])
        return out

    def consumed(self, values: np.ndarray, cell: str) -> np.ndarray:
        """``[N, 7]`` bools: which states of ``cell`` some op reads."""
        inputs = values[:, self.field_slices[f"{cell}_inputs"]]
        return (inputs[:, :, None] == np.arange(NUM_STATES)).any(axis=1)

    def active(self, values: np.ndarray) -> np.ndarray:
        """Which genes matter: the concat bit of a block nothing consumes does not."""
        active = np.ones(values.shape, dtype=bool)
        for cell in CELLS:
            where = self.field_slices[f"{cell}_concat"]
            consumed = self.consumed(values, cell)
            active[:, where.start + 2 : where.stop] = consumed[:, 2:NUM_BITS]
        return active

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.active(values), values, self.canonical)

    def encode(self, values: np.ndarray) -> np.ndarray:
        n = values.shape[0]
        out = np.zeros((n, self.encoding_dim), dtype=np.float32)
        columns = (self.offsets + self.value_index[self.gene_range, values])[:, self.encoded]
        rows = np.broadcast_to(np.arange(n)[:, None], columns.shape)
        out[rows, columns] = self.active(values)[:, self.encoded]
        return out


class InputPattern(NamedTuple):
    """What the cost of a cell depends on in its input wiring, and one wiring that has it."""

    reads_h0: int  # ops reading h_i
    reads_h1: int  # ops reading h_{i-1}
    consumed_blocks: int  # bit mask over blocks 0-4
    count: int  # input assignments with this pattern
    example: tuple[int, ...]  # one such assignment (10 inputs)


@cache
def input_patterns() -> tuple[InputPattern, ...]:
    """Every (reads of h_i, reads of h_{i-1}, consumed blocks) over all 518,400 wirings."""
    states: dict[tuple[int, int, int], tuple[int, tuple[int, ...]]] = {(0, 0, 0): (1, ())}
    for block in range(NUM_BLOCKS):
        following: dict[tuple[int, int, int], tuple[int, tuple[int, ...]]] = {}
        for (h0, h1, mask), (count, example) in states.items():
            for a in range(block + 2):
                for b in range(block + 2):
                    pair = (a, b)
                    read = mask
                    for state in pair:
                        read |= 1 << (state - 2) if state >= 2 else 0
                    key = (h0 + pair.count(0), h1 + pair.count(1), read)
                    old = following.get(key)
                    following[key] = (
                        count + (old[0] if old else 0),
                        old[1] if old else example + pair,
                    )
        states = following
    return tuple(
        InputPattern(*key, count, example) for key, (count, example) in sorted(states.items())
    )


def num_cells() -> int:
    """Distinct cells: every wiring, every op per slot, and the concat bits that matter."""
    ops = len(OPS) ** NUM_SLOTS
    return sum(p.count * 2 ** (2 + p.consumed_blocks.bit_count()) for p in input_patterns()) * ops


def concat_states(inputs: Sequence[int], concat: Sequence[int]) -> tuple[int, ...]:
    """States joined into the cell output, in state order: loose ends plus the set bits."""
    read = set(inputs)
    joined = (*concat, 0)  # the last block has no bit: nothing reads it
    return tuple(s for s in range(NUM_STATES) if joined[s] or (s >= 2 and s not in read))


class Cell(NamedTuple):
    """One cell's genotype, as the cost model and the supernet read it."""

    inputs: tuple[int, ...]
    ops: tuple[int, ...]
    concat: tuple[int, ...]  # states joined into the output, in state order

    @classmethod
    def of(cls, arch: NASNetArch, cell: str) -> Cell:
        inputs, ops = getattr(arch, f"{cell}_inputs"), getattr(arch, f"{cell}_ops")
        return cls(inputs, ops, concat_states(inputs, getattr(arch, f"{cell}_concat")))

    def uses(self, state: int) -> bool:
        """Whether the cell reads or concatenates ``state`` (else it need not be computed)."""
        return state in self.inputs or state in self.concat
