"""NASNet search space (Zoph et al., CVPR 2018, arXiv:1707.07012).

Reproduces the NASNet search space (section 3): a normal and a reduction cell of B = 5 blocks;
each block applies one op from the 13-op list to each of two states (the cell's two inputs or
earlier blocks' outputs) and adds the results; blocks nobody reads are concatenated into the
cell output. Both cells are stacked as in the ImageNet architecture of the TensorFlow release
(``nasnet.py``/``nasnet_utils.py``, see ``_nasnet_plan``); N, F and the resolution are part of
the preset: ``imagenet`` is the mobile scale (N=4, F=44, 224 px), ``imagenet_large`` the large
one (N=6, F=168, 331 px), ``tiny`` N=2, F=16 at 32 px with a stride-1 3x3 stem. The auxiliary
head is optional (``build_supernet(auxiliary_head=True)``) and off by default.

Conventions, and where they come from:

- ReLU-conv-BN ordering; separable convs are applied twice (ReLU, depthwise, pointwise, BN,
  twice), the first with the op's stride: both from the TensorFlow release of NASNet-A.
- Pools have stride 2 on a reduction cell's inputs and no conv; "identity" on a strided input
  is ReLU-1x1 conv-BN with that stride: TensorFlow release.
- Ops the release does not implement (the paper only names them): "1x3 then 3x1" / "1x7 then
  7x1" are ReLU, 1xk conv, kx1 conv, BN (the first conv strides along the width, the second
  along the height); "3x3 dilated" is a dense 3x3 conv with dilation 2; 1x1 and 3x3 are dense
  ReLU-conv-BN.
- Concat: loose ends always, plus one optional bit per read state (see ``_nasnet_genotype``),
  so that NASNet-A (which joins h_{i-1} in its normal cell and block 1 in its reduction cell)
  is in the space; a reduction cell factorizes joined inputs down (TensorFlow's
  ``_combine_unused_states``).
- Preprocessing and ops of a state that the cell does not use are not computed or counted.
- A block averages its two ops' outputs where the paper adds them (``_nasnet_ops.combine``: a
  constant factor that keeps the classifier's input at one scale across archs, so the shared
  supernet trains); layers reading a cell output give each state its own weight columns.
- h_{i-1} of equal size always gets its 1x1 conv (the release skips it when the widths already
  match, which never happens in NASNet-A; here widths depend on the arch).

NASNet-A (the published genotype) is a reference arch of every preset: 5.29M params and 564M
MACs at ``imagenet``, 88.75M params and 23.8G MACs at ``imagenet_large`` (paper Table 2:
5.3M / 564M and 88.9M / 23.8B; the parameter counts equal the osmr/imgclsmob reimplementation).
"min"/"max" are the exact smallest/largest networks (``_nasnet_plan.extreme_cells``): unlike
MBConv spaces, the smallest choice per gene is not the smallest network here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from search_spaces._nasnet_genotype import (
    CELLS,
    FIELDS,
    OP_HELP,
    OPS,
    Cell,
    NASNetArch,
    NASNetLayout,
    num_cells,
)
from search_spaces._nasnet_plan import (
    CostModel,
    NASNetConfig,
    cell_specs,
    extreme_cells,
    head_specs,
    positions,
    stem_spec,
)
from search_spaces.base import (
    SAMPLE_MODES,
    Complexity,
    Dimension,
    SampleMode,
    SearchSpace,
    SpaceSummary,
)
from search_spaces.blocks import BlockSpec

if TYPE_CHECKING:
    from torch import nn

    from search_spaces.supernet import Supernet

NAME = "nasnet"
PRESETS: tuple[str, ...] = ("tiny", "imagenet", "imagenet_large")
SOURCES = (
    "Zoph et al., Learning Transferable Architectures for Scalable Image Recognition, CVPR 2018, "
    "arXiv:1707.07012",
    "tensorflow/models research/slim/nets/nasnet (nasnet.py, nasnet_utils.py): NASNet-A cells "
    "and the ImageNet stack; osmr/imgclsmob nasnet.py (parameter counts)",
)
#: NASNet-A as released (``NasNetANormalCell`` / ``NasNetAReductionCell``).
NASNET_A = {
    "normal_inputs": (0, 1, 1, 1, 0, 1, 1, 1, 0, 0),
    "normal_ops": ("sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3",
                   "avg_pool_3x3", "identity", "avg_pool_3x3", "avg_pool_3x3",
                   "sep_conv_3x3", "identity"),
    "normal_concat": (0, 1, 0, 0, 0, 0),  # joins h_{i-1}; blocks 0-4 are loose ends
    "reduce_inputs": (0, 1, 0, 1, 0, 1, 3, 2, 2, 0),
    "reduce_ops": ("sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7",
                   "avg_pool_3x3", "sep_conv_5x5", "identity", "avg_pool_3x3",
                   "sep_conv_3x3", "max_pool_3x3"),
    "reduce_concat": (0, 0, 0, 1, 0, 0),  # joins block 1 (read by block 3); 2-4 are loose
}  # fmt: skip
#: Paper Table 2 (params, mult-adds) of NASNet-A 4@1056 and 6@4032.
PUBLISHED = {
    "imagenet": {"params": 5.3e6, "macs": 564e6},
    "imagenet_large": {"params": 88.9e6, "macs": 23.8e9},
}

_PRESETS = {  # N, F, stem filters, stem stride, stem padding, resolution, classes, dropout
    "imagenet": (4, 44, 32, 2, "valid", 224, 1000, 0.5),
    "imagenet_large": (6, 168, 96, 2, "valid", 331, 1000, 0.5),
    "tiny": (2, 16, 16, 1, "same", 32, 10, 0.1),
}
_FIELD_HELP = {
    "inputs": "state each op reads: 0 = h_i, 1 = h_i-1, 2+m = block m",
    "ops": "op per slot: " + OP_HELP,
    "concat": "1 = also join this read state (h_i, h_i-1, blocks 0-3) into the output",
}


class NASNetArchType(NASNetArch):
    """A NASNet subnet: a normal and a reduction cell."""

    space: Literal["nasnet"] = "nasnet"


def config(preset: str) -> NASNetConfig:
    n, f, stem, stride, padding, resolution, classes, dropout = _PRESETS[preset]
    return NASNetConfig(
        name=NAME,
        preset=preset,
        num_cells=n,
        filters=f,
        stem_filters=stem,
        stem_stride=stride,
        stem_padding=padding,  # type: ignore[arg-type]
        resolution=resolution,
        num_classes=classes,
        dropout=dropout,
        sources=SOURCES,
    )


class NASNetSpace(SearchSpace):
    """The NASNet cell space stacked at one preset's N, F and resolution."""

    def __init__(
        self, config: NASNetConfig, *, num_classes: int | None = None, in_channels: int = 3
    ) -> None:
        num_classes = config.num_classes if num_classes is None else num_classes
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.config = config
        self.name = config.name
        self.preset = config.preset
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.resolutions = (config.resolution,)
        self.default_resolution = config.resolution
        self.arch_type = NASNetArchType
        self._layout = NASNetLayout(self.resolutions)

    # --- archs -------------------------------------------------------------------------------
    def check_arch(self, arch: NASNetArch) -> None:
        """Raise ``ValueError`` naming the first field whose length or value is not allowed."""
        layout = self._layout
        for name, where in layout.field_slices.items():
            values = (arch.resolution,) if name == "resolution" else getattr(arch, name)
            if len(values) != where.stop - where.start:
                raise ValueError(
                    f"{name} has {len(values)} entries, expected {where.stop - where.start}"
                )
            for position, value in enumerate(values):
                gene = layout.genes[where.start + position]
                if value not in layout.allowed[where.start + position]:
                    label = name if name == "resolution" else f"{name}[{position}]"
                    raise ValueError(
                        f"{label} = {value!r} is not allowed; allowed values: "
                        f"{list(gene.choices)} ({_FIELD_HELP.get(name.split('_')[-1], '')})"
                    )

    def choices(self) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {}
        for gene in self._layout.genes:
            out.setdefault(gene.field, []).append(list(gene.choices))
        return out

    def arch_from_dict(self, data: Mapping[str, Any]) -> NASNetArch:
        if not isinstance(data, Mapping):
            raise TypeError(f"an arch must be a mapping, got {type(data).__name__}")
        full = {"space": self.name, "preset": self.preset, **data}
        if full["space"] != self.name or full["preset"] != self.preset:
            raise ValueError(
                f"arch is for space={full['space']!r} preset={full['preset']!r}, "
                f"not space={self.name!r} preset={self.preset!r}"
            )
        return self.arch_type.model_validate(full)

    def check_member(self, arch: Any) -> None:
        if not isinstance(arch, NASNetArch):
            raise TypeError(f"expected an arch of {self.name!r}, got {type(arch).__name__}")
        if arch.space != self.name or arch.preset != self.preset:
            raise ValueError(
                f"arch belongs to space={arch.space!r} preset={arch.preset!r}, "
                f"not space={self.name!r} preset={self.preset!r}"
            )

    def _arch(self, row: np.ndarray) -> NASNetArch:
        fields = self._layout.fields_of(row.tolist())
        return self.arch_type.model_construct(space=self.name, preset=self.preset, **fields)

    def arch_id(self, arch: NASNetArch) -> str:
        self.check_member(arch)
        values = self._layout.normalise(np.array([self._layout.values_of(arch)]))[0]
        canonical: dict[str, Any] = {"space": self.name, "preset": self.preset}
        canonical.update(self._layout.fields_of(values.tolist()))
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @cached_property
    def _extremes(self) -> dict[str, NASNetArch]:
        model = self._cost_model(self.default_resolution)
        out = {}
        for which in ("min", "max"):
            cells = extreme_cells(model, largest=which == "max")
            data: dict[str, Any] = {"resolution": self.default_resolution}
            for cell in CELLS:
                data.update({f"{cell}_{part}": v for part, v in cells[cell].items()})
            out[which] = self.arch_from_dict(data)
        return out

    def reference_archs(self) -> dict[str, NASNetArch]:
        nasnet_a = self.arch_from_dict({"resolution": self.default_resolution, **NASNET_A})
        return {**self._extremes, "NASNet-A": nasnet_a}

    # --- search operators --------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, mode: SampleMode = "random") -> NASNetArch:
        """Uniform per gene; ``min``/``max`` are the exact smallest/largest networks."""
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        if mode != "random":
            return self._extremes[mode]
        layout = self._layout
        index = rng.integers(0, layout.num_choices)
        return self._arch(layout.choice_table[layout.gene_range, index])

    def mutate(self, arch: NASNetArch, rng: np.random.Generator, prob: float) -> NASNetArch:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        self.check_member(arch)
        layout = self._layout
        values = np.array(layout.values_of(arch))
        resampled = layout.choice_table[layout.gene_range, rng.integers(0, layout.num_choices)]
        return self._arch(np.where(rng.random(layout.num_genes) < prob, resampled, values))

    def crossover(self, a: NASNetArch, b: NASNetArch, rng: np.random.Generator) -> NASNetArch:
        self.check_member(a)
        self.check_member(b)
        layout = self._layout
        take_a = rng.random(layout.num_genes) < 0.5
        return self._arch(np.where(take_a, layout.values_of(a), layout.values_of(b)))

    @property
    def encoding_dim(self) -> int:
        return self._layout.encoding_dim

    def encode(self, arch: NASNetArch) -> np.ndarray:
        return self.encode_batch([arch])[0]

    def encode_batch(self, archs: Sequence[NASNetArch]) -> np.ndarray:
        for arch in archs:
            self.check_member(arch)
        return self._layout.encode(self._layout.values(archs))

    # --- structure and cost ------------------------------------------------------------------
    def _resolution(self, arch: NASNetArch, resolution: int | None) -> int:
        if resolution is None:
            return arch.resolution
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        return resolution

    def blocks(self, arch: NASNetArch, resolution: int | None = None) -> list[BlockSpec]:
        """Stem, then per cell its preprocessing, ops and reductions, then the head."""
        self.check_member(arch)
        size = self._resolution(arch, resolution)
        config = self.config
        cells = {name: Cell.of(arch, name) for name in CELLS}
        specs = [stem_spec(config, self.in_channels, size)]
        raw = config.stem_filters
        channels = [raw, raw]
        out_size = size
        for position in positions(config, size):
            cell = cells[position.cell]
            specs += cell_specs(position, cell, (channels[-1], channels[-2]), raw)
            channels.append(len(cell.concat) * position.filters)
            out_size = position.out_size
        return specs + head_specs(channels[-1], out_size, self.num_classes)

    @lru_cache(maxsize=8)  # noqa: B019 -- spaces are long-lived singletons
    def _cost_model(self, resolution: int) -> CostModel:
        return CostModel(self.config, resolution, self.in_channels, self.num_classes)

    def complexity(self, arch: NASNetArch, resolution: int | None = None) -> Complexity:
        macs, params = self.complexity_batch([arch], resolution)
        return Complexity(int(macs[0]), int(params[0]))

    def complexity_batch(
        self, archs: Sequence[NASNetArch], resolution: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cost tables per (cell, op, input class) plus the width-dependent 1x1 layers."""
        for arch in archs:
            self.check_member(arch)
        n = len(archs)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        layout = self._layout
        values = layout.values(archs)
        macs = np.zeros(n, dtype=np.int64)
        params = np.zeros(n, dtype=np.int64)
        sizes = values[:, 0] if resolution is None else np.full(n, resolution)
        if resolution is not None:
            self._resolution(archs[0], resolution)
        for size in np.unique(sizes):
            rows = sizes == size
            model = self._cost_model(int(size))
            chosen = [
                model.cell_choices(
                    cell,
                    values[rows, layout.field_slices[f"{cell}_inputs"]],
                    values[rows, layout.field_slices[f"{cell}_ops"]],
                    values[rows, layout.field_slices[f"{cell}_concat"]],
                )
                for cell in CELLS
            ]
            macs[rows], params[rows] = model.total(*chosen)
        return macs, params

    # --- summary -----------------------------------------------------------------------------
    def describe(self) -> SpaceSummary:
        return self._summary

    @cached_property
    def _summary(self) -> SpaceSummary:
        groups: dict[tuple[str, tuple[int, ...]], int] = {}
        for gene in self._layout.genes:
            if len(gene.choices) > 1:
                label = gene.field
                if gene.field.endswith("inputs"):
                    label = f"{gene.field}.block{gene.position // 2}"
                groups[(label, gene.choices)] = groups.get((label, gene.choices), 0) + 1
        dimensions = [
            Dimension(
                name=label,
                choices=list(choices),
                slots=slots,
                description=_FIELD_HELP[label.split(".")[0].split("_")[-1]],
            )
            for (label, choices), slots in groups.items()
        ]
        subnets = num_cells() ** 2
        refs = self._extremes
        low, high = self.complexity(refs["min"]), self.complexity(refs["max"])
        return SpaceSummary(
            name=self.name,
            preset=self.preset,
            num_classes=self.num_classes,
            resolutions=list(self.resolutions),
            default_resolution=self.default_resolution,
            dimensions=dimensions,
            num_subnets=subnets,
            num_subnets_with_resolution=subnets,
            min_macs=low.macs,
            max_macs=high.macs,
            min_params=low.params,
            max_params=high.params,
            macs_over_resolutions=(low.macs, high.macs),
            sources=list(self.config.sources),
        )

    # --- networks ----------------------------------------------------------------------------
    def build_supernet(
        self,
        num_classes: int | None = None,
        in_channels: int | None = None,
        *,
        auxiliary_head: bool = False,
    ) -> Supernet:
        """Fresh one-shot supernet; ``auxiliary_head`` adds NASNet's training-time head."""
        from search_spaces._nasnet_supernet import NASNetSupernet

        return NASNetSupernet(
            self,
            num_classes=self.num_classes if num_classes is None else num_classes,
            in_channels=self.in_channels if in_channels is None else in_channels,
            auxiliary_head=auxiliary_head,
        )

    def extract(self, supernet: Supernet, arch: NASNetArch) -> nn.Module:
        from search_spaces._nasnet_supernet import NASNetSupernet

        if not isinstance(supernet, NASNetSupernet) or supernet.space.name != self.name:
            raise TypeError(f"expected a supernet of {self.name!r}, got {type(supernet).__name__}")
        self.check_member(arch)
        return supernet.extract(arch)


def build(preset: str, *, num_classes: int | None = None, in_channels: int = 3) -> NASNetSpace:
    """The NASNet space at ``preset`` (one of ``PRESETS``)."""
    return NASNetSpace(config(preset), num_classes=num_classes, in_channels=in_channels)


__all__ = ["FIELDS", "NAME", "NASNET_A", "OPS", "PRESETS", "NASNetSpace", "build"]
