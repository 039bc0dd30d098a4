"""Terms of the NASNet space: the stem, per cell its preprocessing, ten ops and reductions,
and the head.

An op's layers depend on two genes (its op and the state it reads); a cell's preprocessing
depends on how wide the previous cells' outputs are and whether this cell uses the input at
all, which are derived features (``CostModel.cell_choices``, the same arithmetic the
space's cost model uses). Specs come from ``_nasnet_plan``'s builders, which ``blocks()``
itself calls, so the table cannot drift from the network.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from nas.hardware.decompose import NO_BLOCK, Decomposition, GeneLayout, SpecIds, Term

#: Derived features per cell: output width (concatenated states, 1-7) minus one, then flags.
_DERIVED = ("width", "uses_h0", "uses_h1", "joins_h0", "joins_h1")
_MAX_WIDTH = 7


def decompose_nasnet(space: Any) -> Decomposition:
    from search_spaces._nasnet_genotype import CELLS, NUM_SLOTS
    from search_spaces._nasnet_plan import (
        H0,
        H1,
        CostModel,
        concat_spec,
        head_specs,
        op_specs,
        positions,
        preprocess_spec,
        stem_spec,
    )

    layout = GeneLayout.of(space)
    config = space.config
    cols = layout.columns
    res_col = cols["resolution"][0]
    resolutions = layout.choices[res_col]
    derived = {
        (cell, name): layout.num_genes + i * len(_DERIVED) + j
        for i, cell in enumerate(CELLS)
        for j, name in enumerate(_DERIVED)
    }
    domain = {column: len(c) for column, c in enumerate(layout.choices)}
    for (_, name), column in derived.items():
        domain[column] = _MAX_WIDTH if name == "width" else 2
    cost_model = CostModel(config, resolutions[0], space.in_channels, space.num_classes)

    def derive(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
        parts = []
        for cell in CELLS:
            chosen = cost_model.cell_choices(
                cell,
                values[:, cols[f"{cell}_inputs"]],
                values[:, cols[f"{cell}_ops"]],
                values[:, cols[f"{cell}_concat"]],
            )
            parts += [chosen.width - 1, *chosen[1:5]]
        return np.stack([np.asarray(p, dtype=np.int64) for p in parts], axis=1)

    ids = SpecIds()
    terms: list[Term] = []

    def add(name: str, columns: list[int], build: Any) -> None:
        """``build(resolution, *feature values) -> spec or None`` over every combination."""
        shape = tuple(domain[c] for c in columns)
        table = np.full(shape, NO_BLOCK, dtype=np.int64)
        for combo in itertools.product(*(range(n) for n in shape)):
            values = [layout.choices[c][i] if c < layout.num_genes else i
                      for c, i in zip(columns, combo, strict=True)]  # fmt: skip
            table[combo] = ids(build(*values))
        terms.append(Term(name, tuple(columns), table))

    raw = config.stem_filters
    stacks = {r: positions(config, r) for r in resolutions}
    stack = stacks[resolutions[0]]
    add("stem", [res_col], lambda r: stem_spec(config, space.in_channels, r))

    def channels(k: int, width: int = 0) -> int:
        """Output channels of cell ``k`` for ``width`` (a derived width index), raw before 0."""
        return raw if k < 0 else (width + 1) * stack[k].filters

    for k, place in enumerate(stack):
        cell = place.cell
        name = f"cell{k}.{cell}"

        def pre(state: int, source: int, k: int = k, cell: str = cell, name: str = name) -> None:
            uses = derived[(cell, "uses_h0" if state == H0 else "uses_h1")]
            width = [derived[(stack[source].cell, "width")]] if source >= 0 else []

            def build(r: int, *features: int, state: int = state, source: int = source) -> Any:
                *widths, used = features
                if not used:
                    return None
                return preprocess_spec(stacks[r][k], state, channels(source, *widths))

            add(f"{name}.pre{state}", [res_col, *width, uses], build)

        pre(H0, k - 1)
        if place.prev_kind != "raw":
            pre(H1, k - 2)
        for slot in range(NUM_SLOTS):
            columns = [res_col, cols[f"{cell}_inputs"][slot], cols[f"{cell}_ops"][slot]]
            for part in range(2):  # an op is at most a pool and its 1x1 projection

                def build_op(r: int, state: int, op: int, k: int = k, part: int = part) -> Any:
                    layers = op_specs(stacks[r][k], op, state, raw)
                    return layers[part] if part < len(layers) else None

                add(f"{name}.op{slot}.{part}", columns, build_op)
        if place.reduction:
            for state in (H0, H1):
                joins = derived[(cell, "joins_h0" if state == H0 else "joins_h1")]

                def build_join(r: int, joined: int, k: int = k, state: int = state) -> Any:
                    return concat_spec(stacks[r][k], state, raw) if joined else None

                add(f"{name}.join{state}", [res_col, joins], build_join)
    last = len(stack) - 1
    width = derived[(stack[last].cell, "width")]
    for part in range(2):

        def build_head(r: int, w: int, part: int = part) -> Any:
            return head_specs(channels(last, w), stacks[r][last].out_size, space.num_classes)[part]

        add(f"head.{part}", [res_col, width], build_head)
    return Decomposition(space, layout, ids.specs, terms, derive)
