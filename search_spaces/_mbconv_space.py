"""``SearchSpace`` for every MBConv config: archs, search operators, block specs and cost.

Torch-free; ``build_supernet`` and ``extract`` import the torch side (``_mbconv.py``) lazily.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from search_spaces._mbconv_arch import MBConvArch
from search_spaces._mbconv_config import MBConvConfig, expanded_width, se_width
from search_spaces._mbconv_layout import ArchSettings, MBConvLayout
from search_spaces.base import (
    SAMPLE_MODES,
    Complexity,
    Dimension,
    SampleMode,
    SearchSpace,
    SpaceSummary,
    TrainingRecipe,
)
from search_spaces.blocks import (
    BlockSpec,
    Int,
    block_cost,
    conv_cost,
    conv_output_size,
    linear_cost,
    mbconv_cost,
)

if TYPE_CHECKING:
    from torch import nn

    from search_spaces.supernet import Supernet

Extremes = Literal["min", "max"]
#: Extra named archs of a space, built from the space itself (published models, anchors).
ReferenceBuilder = Callable[["MBConvSpace"], Mapping[str, MBConvArch]]

_FIELD_HELP = {
    "resolution": "input side in pixels",
    "width": "output channels",
    "depth": "blocks run (the first d)",
    "kernel": "depthwise kernel size, per block",
    "expand": "expand ratio, per block",
}


class MBConvSpace(SearchSpace):
    """An elastic MBConv space (Once-for-All, BigNAS) described by an ``MBConvConfig``."""

    arch_type: type[MBConvArch]

    def __init__(
        self,
        config: MBConvConfig,
        arch_type: type[MBConvArch],
        *,
        num_classes: int | None = None,
        in_channels: int = 3,
        references: ReferenceBuilder | None = None,
        default_training: TrainingRecipe | None = None,
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
        self.resolutions = config.resolutions
        self.default_resolution = config.default_resolution
        self.arch_type = arch_type
        self._references = references
        if default_training is not None:
            self.default_training = default_training
        self._layout = MBConvLayout(config)
        self._gene_range = np.arange(self._layout.num_genes)
        self._build_luts()

    def _build_luts(self) -> None:
        """Expanded and SE widths for every (in width, ratio): the batch cost path indexes them."""
        stages = self.config.stages
        max_width = max([*self.config.stem_widths, *(w for s in stages for w in s.widths)])
        max_expand = max(e for s in stages for e in s.expands)
        self._mid_lut = np.zeros((max_width + 1, max_expand + 1), dtype=np.int64)
        for width in range(1, max_width + 1):
            for expand in {e for s in stages for e in s.expands}:
                self._mid_lut[width, expand] = expanded_width(width, expand)
        max_mid = int(self._mid_lut.max())
        self._se_lut = np.array([0] + [se_width(m) for m in range(1, max_mid + 1)])

    # --- archs -------------------------------------------------------------------------------
    def check_arch(self, arch: MBConvArch) -> None:
        """Raise ``ValueError`` naming the first field whose length or value is not allowed."""
        layout = self._layout
        for name in layout.field_names:
            if name == "resolution":
                values: tuple[int, ...] = (arch.resolution,)
            else:
                values = getattr(arch, name)
                expected = layout.field_slices[name].stop - layout.field_slices[name].start
                if len(values) != expected:
                    raise ValueError(
                        f"{name} has {len(values)} entries, expected {expected} "
                        f"({self._slots_help(name)})"
                    )
            start = layout.field_slices[name].start
            for position, value in enumerate(values):
                if value not in layout.allowed[start + position]:
                    where = name if name == "resolution" else f"{name}[{position}]"
                    choices = list(layout.genes[start + position].choices)
                    raise ValueError(
                        f"{where} = {value!r} is not allowed; allowed values: {choices}"
                    )

    def _slots_help(self, name: str) -> str:
        stages = self.config.searchable_stages
        if name == "width":
            return f"stem, {len(stages)} stages, head"
        if name == "depth":
            return "one per stage"
        return "one per block slot: " + " + ".join(str(s.max_depth) for s in stages)

    def arch_from_dict(self, data: Mapping[str, Any]) -> MBConvArch:
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
        if not isinstance(arch, MBConvArch):
            raise TypeError(f"expected an arch of {self.name!r}, got {type(arch).__name__}")
        if arch.space != self.name or arch.preset != self.preset:
            raise ValueError(
                f"arch belongs to space={arch.space!r} preset={arch.preset!r}, "
                f"not space={self.name!r} preset={self.preset!r}"
            )

    def _arch(self, row: np.ndarray | Sequence[int]) -> MBConvArch:
        """Arch from gene values known to be valid (skips validation: hot path)."""
        values = row.tolist() if isinstance(row, np.ndarray) else list(row)
        fields = self._layout.fields_of(values)
        return self.arch_type.model_construct(space=self.name, preset=self.preset, **fields)

    def arch_id(self, arch: MBConvArch) -> str:
        self.check_member(arch)
        values = self._layout.normalise(np.array(self._layout.values_of(arch)))
        canonical = {"space": self.name, "preset": self.preset}
        canonical.update(self._layout.fields_of(values.tolist()))
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def extreme(self, which: Extremes, resolution: int | None = None) -> MBConvArch:
        """Smallest or largest subnet; at the smallest/largest resolution unless given."""
        index = np.zeros_like(self._layout.num_choices)
        if which == "max":
            index = self._layout.num_choices - 1
        values = self._layout.choice_table[self._gene_range, index]
        if resolution is not None:
            if resolution not in self.resolutions:
                raise ValueError(
                    f"resolution = {resolution!r} is not allowed; "
                    f"allowed values: {list(self.resolutions)}"
                )
            values[0] = resolution
        return self._arch(values)

    def settings(self, arch: MBConvArch) -> ArchSettings:
        """Active width, depth, kernels and expand ratios of every stage (fixed ones too)."""
        self.check_member(arch)
        return self._layout.settings(arch)

    def choices(self) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {}
        for gene in self._layout.genes:
            out.setdefault(gene.field, []).append(list(gene.choices))
        return out

    def reference_archs(self) -> dict[str, MBConvArch]:
        refs = {"min": self.extreme("min"), "max": self.extreme("max")}
        if self._references is not None:
            refs.update(self._references(self))
        return refs

    # --- search operators --------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, mode: SampleMode = "random") -> MBConvArch:
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        layout = self._layout
        if mode == "random":
            index = rng.integers(0, layout.num_choices)
        else:
            index = np.zeros_like(layout.num_choices) if mode == "min" else layout.num_choices - 1
        return self._arch(layout.choice_table[self._gene_range, index])

    def mutate(self, arch: MBConvArch, rng: np.random.Generator, prob: float) -> MBConvArch:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        self.check_member(arch)
        layout = self._layout
        values = np.array(layout.values_of(arch))
        resampled = layout.choice_table[self._gene_range, rng.integers(0, layout.num_choices)]
        return self._arch(np.where(rng.random(layout.num_genes) < prob, resampled, values))

    def crossover(self, a: MBConvArch, b: MBConvArch, rng: np.random.Generator) -> MBConvArch:
        self.check_member(a)
        self.check_member(b)
        layout = self._layout
        take_a = rng.random(layout.num_genes) < 0.5
        return self._arch(np.where(take_a, layout.values_of(a), layout.values_of(b)))

    @property
    def encoding_dim(self) -> int:
        return self._layout.encoding_dim

    def encode(self, arch: MBConvArch) -> np.ndarray:
        return self.encode_batch([arch])[0]

    def encode_batch(self, archs: Sequence[MBConvArch]) -> np.ndarray:
        for arch in archs:
            self.check_member(arch)
        return self._layout.encode(self._layout.values(archs))

    # --- structure and cost ------------------------------------------------------------------
    @staticmethod
    def _check_resolution(resolution: int) -> int:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        return resolution

    def blocks(self, arch: MBConvArch, resolution: int | None = None) -> list[BlockSpec]:
        self.check_member(arch)
        config = self.config
        size = arch.resolution if resolution is None else self._check_resolution(resolution)
        settings = self._layout.settings(arch)
        prev = settings.stem_width
        specs = [
            BlockSpec("conv", self.in_channels, prev, 3, config.stem_stride, size,
                      act=config.stem_act, bn=True),
        ]  # fmt: skip
        size = int(conv_output_size(size, 3, config.stem_stride))
        for stage, chosen in zip(config.stages, settings.stages, strict=True):
            width = chosen.width
            for i in range(chosen.depth):
                stride = stage.stride if i == 0 else 1
                kernel, expand = chosen.kernels[i], chosen.expands[i]
                mid = expanded_width(prev, expand)
                specs.append(
                    BlockSpec("mbconv", prev, width, kernel, stride, size, float(expand), mid,
                              stage.se, se_width(mid) if stage.se else 0, stage.act, True, False,
                              stride == 1 and prev == width)
                )  # fmt: skip
                size = int(conv_output_size(size, kernel, stride))
                prev = width
        head = settings.head_width
        specs.append(BlockSpec("conv", prev, head, 1, 1, size, act=config.head_act, bn=True))
        specs.append(BlockSpec("pool", head, head, size, 1, size))
        features = head
        if config.mix_width is not None:
            features = config.mix_width
            specs.append(
                BlockSpec("conv", head, features, 1, 1, 1, act=config.head_act,
                          bias=config.mix_bias)
            )  # fmt: skip
        specs.append(BlockSpec("linear", features, self.num_classes, 1, 1, 1, bias=True))
        return specs

    def complexity(self, arch: MBConvArch, resolution: int | None = None) -> Complexity:
        macs: Int = 0
        params: Int = 0
        for spec in self.blocks(arch, resolution):
            m, p = block_cost(spec)
            macs += m
            params += p
        return Complexity(int(macs), int(params))

    def complexity_batch(
        self, archs: Sequence[MBConvArch], resolution: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Same arithmetic as ``blocks`` + ``block_cost``, over arrays of archs."""
        for arch in archs:
            self.check_member(arch)
        layout, config = self._layout, self.config
        values = layout.values(archs)
        n = len(archs)
        size: Int
        if resolution is None:
            size = values[:, 0]
        else:
            size = np.full(n, self._check_resolution(resolution), dtype=np.int64)
        widths = values[:, layout.field_slices["width"]] if config.elastic_width else None

        def width_of(column: int, fixed: int) -> Int:
            return widths[:, column] if widths is not None else fixed

        prev = width_of(0, config.stem_widths[0])
        width: Int
        depth: Int
        kernel: Int
        expand: Int
        macs: Int
        params: Int
        macs, params = conv_cost(self.in_channels, prev, 3, config.stem_stride, size, True, False)
        size = conv_output_size(size, 3, config.stem_stride)
        kernel_start = layout.field_slices["kernel"].start
        expand_start = layout.field_slices["expand"].start
        searchable = slot_base = 0
        for stage in config.stages:
            if stage.searchable:
                width = width_of(searchable + 1, stage.widths[0])
                depth = values[:, layout.field_slices["depth"].start + searchable]
            else:
                width, depth = stage.widths[0], stage.depths[0]
            for i in range(stage.max_depth):
                if stage.searchable:
                    kernel = values[:, kernel_start + slot_base + i]
                    expand = values[:, expand_start + slot_base + i]
                else:
                    kernel, expand = stage.kernels[0], stage.expands[0]
                stride = stage.stride if i == 0 else 1
                mid = self._mid_lut[prev, expand]
                se = self._se_lut[mid] if stage.se else 0
                m, p = mbconv_cost(prev, width, mid, kernel, stride, size, se, expand != 1)
                active = i < depth
                macs = macs + m * active
                params = params + p * active
                size = conv_output_size(size, kernel, stride)
                prev = width
            if stage.searchable:
                searchable += 1
                slot_base += stage.max_depth
        head = width_of(-1, config.head_widths[0])
        m, p = conv_cost(prev, head, 1, 1, size, True, False)
        macs, params = macs + m, params + p
        features = head
        if config.mix_width is not None:
            features = config.mix_width
            m, p = conv_cost(head, features, 1, 1, 1, False, config.mix_bias)
            macs, params = macs + m, params + p
        m, p = linear_cost(features, self.num_classes, True)
        as_array = np.broadcast_to  # fixed-width spaces yield scalars for some terms
        return (
            as_array(np.asarray(macs + m, dtype=np.int64), (n,)).copy(),
            as_array(np.asarray(params + p, dtype=np.int64), (n,)).copy(),
        )

    # --- summary -----------------------------------------------------------------------------
    def describe(self) -> SpaceSummary:
        return self._summary

    @cached_property
    def _summary(self) -> SpaceSummary:
        config = self.config
        dimensions = [
            Dimension(
                name=f"{g.field}.{g.label}" if g.field != "resolution" else g.field,
                choices=list(g.choices),
                slots=1 if g.slot < 0 else config.stages[g.stage].max_depth,
                description=_FIELD_HELP[g.field],
            )
            for g in self._layout.genes
            if len(g.choices) > 1 and g.slot <= 0
        ]
        subnets = 1
        for g in self._layout.genes:
            if g.field == "width":
                subnets *= len(g.choices)
        for stage in config.searchable_stages:
            per_block = len(stage.kernels) * len(stage.expands)
            subnets *= sum(per_block**d for d in stage.depths)
        smallest, largest = self.extreme("min"), self.extreme("max")
        low = self.complexity(smallest, config.default_resolution)
        high = self.complexity(largest, config.default_resolution)
        return SpaceSummary(
            name=self.name,
            preset=self.preset,
            num_classes=self.num_classes,
            resolutions=list(config.resolutions),
            default_resolution=config.default_resolution,
            dimensions=dimensions,
            num_subnets=subnets,
            num_subnets_with_resolution=subnets * len(config.resolutions),
            min_macs=low.macs,
            max_macs=high.macs,
            min_params=low.params,
            max_params=high.params,
            macs_over_resolutions=(
                self.complexity(smallest).macs,
                self.complexity(largest).macs,
            ),
            sources=list(config.sources),
        )

    # --- networks ----------------------------------------------------------------------------
    def build_supernet(
        self, num_classes: int | None = None, in_channels: int | None = None
    ) -> Supernet:
        """Fresh supernet; ``complexity`` describes it when built with this space's defaults."""
        from search_spaces._mbconv import MBConvSupernet

        return MBConvSupernet(
            self,
            num_classes=self.num_classes if num_classes is None else num_classes,
            in_channels=self.in_channels if in_channels is None else in_channels,
        )

    def extract(self, supernet: Supernet, arch: MBConvArch) -> nn.Module:
        from search_spaces._mbconv import MBConvSupernet

        if not isinstance(supernet, MBConvSupernet) or supernet.space.name != self.name:
            raise TypeError(f"expected a supernet of {self.name!r}, got {type(supernet).__name__}")
        if supernet.space.preset != self.preset:
            raise ValueError(
                f"supernet is of preset {supernet.space.preset!r}, not {self.preset!r}"
            )
        self.check_member(arch)
        return supernet.extract(arch)
