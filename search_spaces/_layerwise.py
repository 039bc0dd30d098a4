"""Layer-wise MBConv spaces: each searchable layer picks a kernel and expand ratio, or is skipped.

ProxylessNAS (arXiv:1812.00332) and Single-Path NAS (arXiv:1904.02877) search the same kind of
space over a fixed MobileNetV2 macro-architecture: every searchable layer chooses its MBConv
kernel size and expand ratio, and every layer that has a residual (all but the first layer of
a stage) may instead be skipped, leaving the identity. Their supernets differ (side-by-side
candidates vs one superkernel), their archs and cost do not, so both share this module.

An arch holds one ``kernel`` and one ``expand`` slot per searchable layer; ``expand == 0``
(``SKIP``) marks a skipped layer, whose kernel does not exist (ids normalise it). Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from search_spaces._mbconv_config import MBConvConfig

if TYPE_CHECKING:
    from search_spaces._layerwise_space import LayerwiseSpace

#: ``expand`` value of a skipped layer (ProxylessNAS's ``zero`` op, Single-Path NAS's skip).
SKIP = 0


def _space_of(arch: LayerwiseArch) -> LayerwiseSpace:
    from search_spaces._registry import get  # the registry imports the space modules

    return get(arch.space, preset=arch.preset)  # type: ignore[return-value]


class LayerwiseArch(BaseModel):
    """Choices of one subnet: ``kernel`` and ``expand`` hold one slot per searchable layer.

    Equality and hashing compare the raw fields; use ``id`` to compare networks (it ignores
    the kernel of skipped layers).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    preset: str
    resolution: int
    kernel: tuple[int, ...]
    expand: tuple[int, ...]

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


class LayerSlot(NamedTuple):
    """One searchable layer: where it is and what it connects."""

    stage: int  # index into ``config.stages``
    index: int  # layer index inside its stage
    in_channels: int
    out_channels: int
    stride: int
    skippable: bool  # has a residual, so it may be skipped


class Gene(NamedTuple):
    field: str
    position: int  # index inside the arch field (``kernel[position]``)
    choices: tuple[int, ...]
    slot: int  # index into ``layout.slots``; -1 for resolution


def layer_slots(config: MBConvConfig) -> tuple[LayerSlot, ...]:
    """Searchable layers in network order; only a stage's first layer changes width or strides."""
    slots: list[LayerSlot] = []
    width = config.stem_widths[0]
    for number, stage in enumerate(config.stages):
        out = stage.widths[0]
        for index in range(stage.max_depth):
            if stage.searchable:
                stride = stage.stride if index == 0 else 1
                slots.append(LayerSlot(number, index, width, out, stride, index > 0))
            width = out
    return tuple(slots)


class LayerwiseLayout:
    """Gene tables (``resolution, kernel..., expand...``) and vectorised helpers on ``[N, G]``."""

    def __init__(self, config: MBConvConfig) -> None:
        self.config = config
        self.slots = layer_slots(config)
        stages = config.stages
        genes = [Gene("resolution", 0, config.resolutions, -1)]
        genes += [Gene("kernel", i, stages[s.stage].kernels, i) for i, s in enumerate(self.slots)]
        genes += [
            Gene("expand", i, ((SKIP,) if s.skippable else ()) + stages[s.stage].expands, i)
            for i, s in enumerate(self.slots)
        ]
        self.genes: tuple[Gene, ...] = tuple(genes)
        self.num_genes = len(genes)
        n = len(self.slots)
        self.field_slices = {
            "resolution": slice(0, 1),
            "kernel": slice(1, 1 + n),
            "expand": slice(1 + n, 1 + 2 * n),
        }
        self.allowed: tuple[frozenset[int], ...] = tuple(frozenset(g.choices) for g in genes)
        self.num_choices = np.array([len(g.choices) for g in genes], dtype=np.int64)
        self.choice_table = np.zeros((self.num_genes, int(self.num_choices.max())), np.int64)
        for i, g in enumerate(genes):
            self.choice_table[i, : len(g.choices)] = g.choices
        self.value_index = np.full((self.num_genes, max(max(g.choices) for g in genes) + 1), -1)
        for i, g in enumerate(genes):
            self.value_index[i, list(g.choices)] = np.arange(len(g.choices))
        self.canonical = self.choice_table[:, 0].copy()
        self.gene_range = np.arange(self.num_genes)
        # A kernel gene matters only when its layer runs: gate it by the layer's expand gene.
        self.is_kernel = np.zeros(self.num_genes, dtype=bool)
        self.is_kernel[self.field_slices["kernel"]] = True
        self.gate = np.where(self.is_kernel, self.gene_range + n, 0)
        self.encoded = self.num_choices > 1  # a single-choice gene carries no information
        sizes = np.where(self.encoded, self.num_choices, 0)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.encoding_dim = int(sizes.sum())

    # --- arch <-> values ---------------------------------------------------------------------
    @staticmethod
    def values_of(arch: LayerwiseArch) -> list[int]:
        return [arch.resolution, *arch.kernel, *arch.expand]

    def values(self, archs: Sequence[LayerwiseArch]) -> np.ndarray:
        rows = [self.values_of(a) for a in archs]
        return np.array(rows, dtype=np.int64).reshape(len(archs), self.num_genes)

    def fields_of(self, row: Sequence[int]) -> dict[str, Any]:
        """Arch keyword arguments from one row of values (Python ints, tuples)."""
        values = [int(v) for v in row]
        return {
            "resolution": values[0],
            "kernel": tuple(values[self.field_slices["kernel"]]),
            "expand": tuple(values[self.field_slices["expand"]]),
        }

    # --- vectorised --------------------------------------------------------------------------
    def active(self, values: np.ndarray) -> np.ndarray:
        """Which genes matter: the kernel of a skipped layer does not."""
        return ~self.is_kernel | (values[..., self.gate] != SKIP)

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.active(values), values, self.canonical)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """One-hot per multi-choice gene, zero for the kernel of skipped layers."""
        n = values.shape[0]
        out = np.zeros((n, self.encoding_dim), dtype=np.float32)
        indices = self.value_index[self.gene_range, values]
        columns = (self.offsets + indices)[:, self.encoded]
        rows = np.broadcast_to(np.arange(n)[:, None], columns.shape)
        out[rows, columns] = self.active(values)[:, self.encoded]
        return out

    def num_subnets(self) -> int:
        """Distinct networks: a skipped layer counts once whatever its kernel."""
        total = 1
        stages = self.config.stages
        for slot in self.slots:
            stage = stages[slot.stage]
            total *= len(stage.kernels) * len(stage.expands) + slot.skippable
        return total
