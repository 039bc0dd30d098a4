"""Terms of the MBConv families (Once-for-All, BigNAS; ProxylessNAS, Single-Path NAS).

Which genes shape which place follows from the config: a block of stage s reads the
resolution, its own kernel and expand genes, the stage's width and, for the first block, the
previous stage's width; depth (or ``expand = 0`` in the layer-wise spaces) only switches it
on or off. The spec at each place is read off ``space.blocks()`` of probe archs: the largest
arch with that place's genes set, so no block is rebuilt here. Skipping never moves a later
place: with every other stage at full depth, place j is always ``blocks()[j]``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from nas.hardware.decompose import NO_BLOCK, Decomposition, GeneLayout, SpecIds, Term


class _Place:
    """Where a term sits in ``blocks()`` of a full-depth arch, and what it depends on."""

    def __init__(
        self,
        name: str,
        index: int,
        columns: list[int],
        gate: int | None = None,
        off: frozenset[int] = frozenset(),
    ) -> None:
        self.name = name
        self.index = index
        self.columns = columns
        self.gate = gate  # the column that can switch the block off (depth, or expand = 0)
        self.off = off  # values of the gate column that do


def _mbconv_places(space: Any, layout: GeneLayout) -> list[_Place]:
    config = space.config
    cols = layout.columns
    res = cols["resolution"][0]
    widths = cols.get("width")
    places = [_Place("stem", 0, [res, *(widths[:1] if widths else [])])]
    previous = widths[0] if widths else None
    index, searchable, slot = 1, 0, 0
    for number, stage in enumerate(config.stages):
        if not stage.searchable:
            for i in range(stage.depths[0]):
                inputs = [previous] if i == 0 and previous is not None else []
                places.append(_Place(f"stage{number}.{i}", index, [res, *inputs]))
                index += 1
            previous = None
            continue
        width = widths[searchable + 1] if widths else None
        depth = cols["depth"][searchable]
        for i in range(stage.max_depth):
            shape = [c for c in (previous if i == 0 else None, width) if c is not None]
            genes = [cols["kernel"][slot + i], cols["expand"][slot + i]]
            off = frozenset(d for d in layout.choices[depth] if d <= i)
            places.append(
                _Place(f"stage{number}.{i}", index, [res, *shape, depth, *genes], depth, off)
            )
            index += 1
        previous = width
        searchable += 1
        slot += stage.max_depth
    full = len(space.blocks(space.reference_archs()["max"]))
    tail = [c for c in (previous, widths[-1] if widths else None) if c is not None]
    places += [_Place(f"head.{j}", j, [res, *tail]) for j in range(index, full)]
    return places


def _layerwise_places(space: Any, layout: GeneLayout) -> list[_Place]:
    from search_spaces._layerwise import SKIP

    config = space.config
    cols = layout.columns
    res = cols["resolution"][0]
    places = [_Place("stem", 0, [res])]
    index = slot = 0
    for number, stage in enumerate(config.stages):
        for i in range(stage.max_depth):
            index += 1
            if not stage.searchable:
                places.append(_Place(f"stage{number}.{i}", index, [res]))
                continue
            kernel, expand = cols["kernel"][slot], cols["expand"][slot]
            off = frozenset({SKIP}) & frozenset(layout.choices[expand])
            places.append(_Place(f"stage{number}.{i}", index, [res, kernel, expand], expand, off))
            slot += 1
    full = len(space.blocks(space.reference_archs()["max"]))
    places += [_Place(f"head.{j}", j, [res]) for j in range(index + 1, full)]
    return places


def decompose_mbconv(space: Any) -> Decomposition:
    """Terms of an ``MBConvSpace`` or ``LayerwiseSpace``, filled by probing ``blocks()``."""
    from search_spaces._layerwise_space import LayerwiseSpace

    layout = GeneLayout.of(space)
    if isinstance(space, LayerwiseSpace):
        places = _layerwise_places(space, layout)
    else:
        places = _mbconv_places(space, layout)
    base = [c[-1] for c in layout.choices]  # the largest arch: every place present
    ids = SpecIds()
    probes: dict[tuple[int, ...], list[Any]] = {}

    def blocks_of(values: tuple[int, ...]) -> list[Any]:
        found = probes.get(values)
        if found is None:
            arch = space.arch_from_dict(layout.fields_of(values))
            found = probes[values] = space.blocks(arch)
        return found

    terms = []
    for place in places:
        shape = tuple(len(layout.choices[c]) for c in place.columns)
        table = np.full(shape, NO_BLOCK, dtype=np.int64)
        for combo in itertools.product(*(range(n) for n in shape)):
            values = list(base)
            for column, choice in zip(place.columns, combo, strict=True):
                values[column] = layout.choices[column][choice]
            if place.gate is None or values[place.gate] not in place.off:
                table[combo] = ids(blocks_of(tuple(values))[place.index])
        terms.append(Term(place.name, tuple(place.columns), table))
    return Decomposition(space, layout, ids.specs, terms)
