"""A network's blocks as additive terms over a few arch choices each: exact enumeration of
every block a space can produce, and the index that lets the predictor gather per batch.

Each ``Term`` is one place in the network (the stem, slot 3 of stage 2, op 7 of the fifth
cell, ...) and depends on a few *features* of an arch: gene choice indices (resolution,
kernel, expand ratio, depth, width) or values derived from them (how wide a NASNet cell's
output is). Its table maps every combination of those features to the ``BlockSpec`` found
there, or to nothing (a block skipped by elastic depth). The blocks of an arch are exactly
the table lookups of all terms, so

- the union of all tables is every distinct block the space produces (no sampling), and
- predicted latency is one vectorised gather over ``[N, terms]`` indices and a row sum.

The family-specific part (which place depends on which features) lives in
``_decompose_mbconv`` and ``_decompose_nasnet``; the blocks themselves always come from the
space's own ``blocks()`` or the spec builders it uses, so nothing here restates a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from search_spaces import BlockSpec, SearchSpace

#: Key id of "no block here" in term tables.
NO_BLOCK = -1


@dataclass(frozen=True)
class Term:
    """One place in the network: ``table[feature indices...]`` is a spec id or ``NO_BLOCK``."""

    name: str
    columns: tuple[int, ...]
    table: np.ndarray  # int64, one axis per column


@dataclass
class GeneLayout:
    """Arch fields in ``choices()`` order, flattened into gene columns of choice indices."""

    fields: list[str]
    scalar: list[bool]
    choices: list[list[int]]  # per gene
    columns: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, space: SearchSpace) -> GeneLayout:
        per_field = space.choices()
        example = space.reference_archs()["max"]
        fields = list(per_field)
        scalar = [not isinstance(getattr(example, name), tuple) for name in fields]
        choices: list[list[int]] = []
        columns: dict[str, list[int]] = {}
        for name in fields:
            columns[name] = list(range(len(choices), len(choices) + len(per_field[name])))
            choices.extend(list(c) for c in per_field[name])
        return cls(fields, scalar, choices, columns)

    @property
    def num_genes(self) -> int:
        return len(self.choices)

    def value_index(self) -> np.ndarray:
        """``[genes, max value + 1]``: the choice index of each value, -1 where not allowed."""
        top = max(max(c) for c in self.choices)
        out = np.full((self.num_genes, top + 1), -1, dtype=np.int64)
        for gene, allowed in enumerate(self.choices):
            out[gene, allowed] = np.arange(len(allowed))
        return out

    def values(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N, genes]`` raw gene values; one C-level pass per field, not a loop per gene."""
        n = len(archs)
        columns = []
        for name, is_scalar in zip(self.fields, self.scalar, strict=True):
            read = attrgetter(name)
            if is_scalar:
                columns.append(np.fromiter(map(read, archs), dtype=np.int64, count=n)[:, None])
            else:
                width = len(self.columns[name])
                flat = chain.from_iterable(map(read, archs))
                column = np.fromiter(flat, dtype=np.int64, count=n * width)
                columns.append(column.reshape(n, width))
        return np.concatenate(columns, axis=1)

    def fields_of(self, values: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, is_scalar in zip(self.fields, self.scalar, strict=True):
            cols = self.columns[name]
            out[name] = int(values[cols[0]]) if is_scalar else tuple(int(values[c]) for c in cols)
        return out


class Decomposition:
    """Terms of one space; built by ``decompose(space)``. Immutable after construction.

    ``features(archs)`` gives the ``[N, F]`` feature matrix (gene choice indices, then any
    derived features); ``key_ids(features)`` the ``[N, terms]`` spec ids.
    """

    def __init__(
        self,
        space: SearchSpace,
        layout: GeneLayout,
        specs: list[BlockSpec],
        terms: list[Term],
        derive: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.space = space
        self.layout = layout
        self.specs = specs
        self.terms = terms
        self._derive = derive
        self._value_index = layout.value_index()
        self._gene_range = np.arange(layout.num_genes)
        sizes = [t.table.size for t in terms]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.flat_table = np.concatenate([t.table.ravel() for t in terms])
        # flat position of term t = offset_t + sum_j feature[column_tj] * stride_tj; padded
        # slots have stride 0. A loop over j (at most a few slots per term), never over terms.
        width = max(len(t.columns) for t in terms)
        self._columns = np.zeros((width, len(terms)), dtype=np.int64)
        self._strides = np.zeros((width, len(terms), 1), dtype=np.int64)
        for i, term in enumerate(terms):
            strides = np.array(term.table.strides, dtype=np.int64) // term.table.itemsize
            self._columns[: len(term.columns), i] = term.columns
            self._strides[: len(term.columns), i, 0] = strides

    # --- archs -> features -> spec ids ------------------------------------------------------
    def gene_values(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N, genes]`` raw values (resolution in pixels, kernel sizes, ...)."""
        if not archs:
            return np.zeros((0, self.layout.num_genes), dtype=np.int64)
        return self.layout.values(archs)

    def features(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N, F]`` features; raises unless every arch belongs to this space and preset."""
        check = self.space.check_member  # type: ignore[attr-defined]
        for arch in archs:
            check(arch)
        return self.features_of_values(self.gene_values(archs))

    def features_of_values(self, values: np.ndarray) -> np.ndarray:
        """Features from ``[N, genes]`` gene values; raises on a value no gene allows."""
        top = self._value_index.shape[1]
        if values.size and (values.min() < 0 or values.max() >= top):
            raise ValueError("gene values out of range for this space")
        indices = self._value_index[self._gene_range, values]
        if (indices < 0).any():
            row, gene = np.argwhere(indices < 0)[0]
            raise ValueError(f"arch {row}: gene {gene} has a value this space does not allow")
        if self._derive is None:
            return indices
        return np.concatenate([indices, self._derive(values, indices)], axis=1)

    def flat_index(self, features: np.ndarray) -> np.ndarray:
        """``[N, terms]`` positions in ``flat_table`` (one gather gives the spec ids)."""
        by_feature = np.ascontiguousarray(features.T)  # row gathers copy contiguous memory
        positions = np.repeat(self._offsets[:, None], len(features), axis=1)
        for columns, strides in zip(self._columns, self._strides, strict=True):
            positions += by_feature[columns] * strides
        return positions.T

    def key_ids(self, features: np.ndarray) -> np.ndarray:
        return self.flat_table[self.flat_index(features)]

    # --- enumeration ------------------------------------------------------------------------
    def spec_ids(self, resolutions: Sequence[int] | None = None) -> list[int]:
        """Ids of every spec some arch produces at ``resolutions`` (default: all)."""
        res_column = self.layout.columns["resolution"][0]
        allowed = self.layout.choices[res_column]
        wanted = allowed if resolutions is None else list(resolutions)
        unknown = sorted(set(wanted) - set(allowed))
        if unknown:
            raise ValueError(f"resolutions {unknown} are not allowed; allowed values: {allowed}")
        keep = [allowed.index(r) for r in wanted]
        found: set[int] = set()
        for term in self.terms:
            axis = term.columns.index(res_column)
            found.update(np.take(term.table, keep, axis=axis).ravel().tolist())
        found.discard(NO_BLOCK)
        return sorted(found)

    def distinct_blocks(self, resolutions: Sequence[int] | None = None) -> list[BlockSpec]:
        return [self.specs[i] for i in self.spec_ids(resolutions)]


class SpecIds:
    """Interning of specs: equal specs share one id."""

    def __init__(self) -> None:
        self.specs: list[BlockSpec] = []
        self._ids: dict[BlockSpec, int] = {}

    def __call__(self, spec: BlockSpec | None) -> int:
        if spec is None:
            return NO_BLOCK
        found = self._ids.get(spec)
        if found is None:
            found = self._ids[spec] = len(self.specs)
            self.specs.append(spec)
        return found


def decompose(space: SearchSpace) -> Decomposition:
    """The decomposition of ``space``'s family; raises ``TypeError`` for an unknown family."""
    from search_spaces._layerwise_space import LayerwiseSpace
    from search_spaces._mbconv_space import MBConvSpace
    from search_spaces.nasnet import NASNetSpace

    if isinstance(space, MBConvSpace | LayerwiseSpace):
        from nas.hardware._decompose_mbconv import decompose_mbconv

        return decompose_mbconv(space)
    if isinstance(space, NASNetSpace):
        from nas.hardware._decompose_nasnet import decompose_nasnet

        return decompose_nasnet(space)
    raise TypeError(
        f"no latency decomposition for space {space.name!r} ({type(space).__name__}); "
        "add one to nas/hardware"
    )
