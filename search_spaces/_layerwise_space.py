"""``SearchSpace`` for layer-wise MBConv configs (ProxylessNAS, Single-Path NAS).

Torch-free; ``build_supernet`` and ``extract`` import ``_layerwise_supernet`` lazily. Widths
are fixed, so every layer's input width is known and a skipped layer simply drops out of the
cost sums.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from search_spaces._layerwise import SKIP, LayerwiseArch, LayerwiseLayout
from search_spaces._mbconv_config import MBConvConfig
from search_spaces.base import (
    SAMPLE_MODES,
    Complexity,
    Dimension,
    SampleMode,
    SearchSpace,
    SpaceSummary,
)
from search_spaces.blocks import (
    BlockSpec,
    block_cost,
    conv_cost,
    conv_output_size,
    linear_cost,
    mbconv_cost,
)

if TYPE_CHECKING:
    from torch import nn

    from search_spaces.supernet import Supernet

#: How a supernet holds a layer's options: ProxylessNAS's separate candidate ops side by side,
#: or Single-Path NAS's one superkernel whose smaller options are slices of the largest.
SupernetKind = Literal["candidates", "superkernel"]
ReferenceBuilder = Callable[["LayerwiseSpace"], Mapping[str, LayerwiseArch]]


class LayerwiseSpace(SearchSpace):
    """A fixed-width MBConv backbone whose searchable layers choose kernel, expand or skip."""

    def __init__(
        self,
        config: MBConvConfig,
        arch_type: type[LayerwiseArch],
        *,
        supernet_kind: SupernetKind,
        num_classes: int | None = None,
        in_channels: int = 3,
        references: ReferenceBuilder | None = None,
    ) -> None:
        num_classes = config.num_classes if num_classes is None else num_classes
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if supernet_kind not in ("candidates", "superkernel"):
            raise ValueError(
                f"supernet_kind must be one of ('candidates', 'superkernel'), got {supernet_kind!r}"
            )
        if config.elastic_width or any(
            len(s.widths) != 1 or len(s.depths) != 1 for s in config.stages
        ):
            raise ValueError("a layer-wise space has one width and one depth per stage")
        self.config = config
        self.name = config.name
        self.preset = config.preset
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.resolutions = config.resolutions
        self.default_resolution = config.default_resolution
        self.arch_type = arch_type
        self.supernet_kind: SupernetKind = supernet_kind
        self._references = references
        self._layout = LayerwiseLayout(config)
        slots = self._layout.slots
        self._slot_in = np.array([s.in_channels for s in slots], dtype=np.int64)
        self._slot_out = np.array([s.out_channels for s in slots], dtype=np.int64)
        self._slot_stride = np.array([s.stride for s in slots], dtype=np.int64)

    @property
    def layout(self) -> LayerwiseLayout:
        return self._layout

    # --- archs -------------------------------------------------------------------------------
    def check_arch(self, arch: LayerwiseArch) -> None:
        """Raise ``ValueError`` naming the first field whose length or value is not allowed."""
        layout = self._layout
        for name, where in layout.field_slices.items():
            values = (arch.resolution,) if name == "resolution" else getattr(arch, name)
            expected = where.stop - where.start
            if len(values) != expected:
                raise ValueError(
                    f"{name} has {len(values)} entries, expected {expected} "
                    "(one per searchable layer)"
                )
            for position, value in enumerate(values):
                gene = layout.genes[where.start + position]
                if value not in layout.allowed[where.start + position]:
                    label = name if name == "resolution" else f"{name}[{position}]"
                    hint = f" ({SKIP} = skip the layer)" if SKIP in gene.choices else ""
                    raise ValueError(
                        f"{label} = {value!r} is not allowed; allowed values: "
                        f"{list(gene.choices)}{hint}"
                    )

    def choices(self) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {}
        for gene in self._layout.genes:
            out.setdefault(gene.field, []).append(list(gene.choices))
        return out

    def arch_from_dict(self, data: Mapping[str, Any]) -> LayerwiseArch:
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
        """Raise unless ``arch`` is an arch of this space and preset."""
        if not isinstance(arch, LayerwiseArch):
            raise TypeError(f"expected an arch of {self.name!r}, got {type(arch).__name__}")
        if arch.space != self.name or arch.preset != self.preset:
            raise ValueError(
                f"arch belongs to space={arch.space!r} preset={arch.preset!r}, "
                f"not space={self.name!r} preset={self.preset!r}"
            )

    def _arch(self, row: np.ndarray) -> LayerwiseArch:
        """Arch from gene values known to be valid (skips validation: hot path)."""
        fields = self._layout.fields_of(row.tolist())
        return self.arch_type.model_construct(space=self.name, preset=self.preset, **fields)

    def arch_id(self, arch: LayerwiseArch) -> str:
        self.check_member(arch)
        values = self._layout.normalise(np.array(self._layout.values_of(arch)))
        canonical: dict[str, Any] = {"space": self.name, "preset": self.preset}
        canonical.update(self._layout.fields_of(values.tolist()))
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def extreme(self, which: Literal["min", "max"]) -> LayerwiseArch:
        """Smallest (every skippable layer skipped, k and e smallest) or largest subnet."""
        layout = self._layout
        index = np.zeros_like(layout.num_choices) if which == "min" else layout.num_choices - 1
        values = layout.choice_table[layout.gene_range, index]
        return self.arch_from_dict(layout.fields_of(values.tolist()))

    def reference_archs(self) -> dict[str, LayerwiseArch]:
        refs = {"min": self.extreme("min"), "max": self.extreme("max")}
        if self._references is not None:
            refs.update(self._references(self))
        return refs

    # --- search operators --------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, mode: SampleMode = "random") -> LayerwiseArch:
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        layout = self._layout
        if mode == "random":
            index = rng.integers(0, layout.num_choices)
        else:
            index = np.zeros_like(layout.num_choices) if mode == "min" else layout.num_choices - 1
        return self._arch(layout.choice_table[layout.gene_range, index])

    def mutate(self, arch: LayerwiseArch, rng: np.random.Generator, prob: float) -> LayerwiseArch:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        self.check_member(arch)
        layout = self._layout
        values = np.array(layout.values_of(arch))
        resampled = layout.choice_table[layout.gene_range, rng.integers(0, layout.num_choices)]
        return self._arch(np.where(rng.random(layout.num_genes) < prob, resampled, values))

    def crossover(
        self, a: LayerwiseArch, b: LayerwiseArch, rng: np.random.Generator
    ) -> LayerwiseArch:
        self.check_member(a)
        self.check_member(b)
        layout = self._layout
        take_a = rng.random(layout.num_genes) < 0.5
        return self._arch(np.where(take_a, layout.values_of(a), layout.values_of(b)))

    @property
    def encoding_dim(self) -> int:
        return self._layout.encoding_dim

    def encode(self, arch: LayerwiseArch) -> np.ndarray:
        return self.encode_batch([arch])[0]

    def encode_batch(self, archs: Sequence[LayerwiseArch]) -> np.ndarray:
        for arch in archs:
            self.check_member(arch)
        return self._layout.encode(self._layout.values(archs))

    # --- structure and cost ------------------------------------------------------------------
    def _resolution(self, arch: LayerwiseArch, resolution: int | None) -> int:
        if resolution is None:
            return arch.resolution
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        return resolution

    def blocks(self, arch: LayerwiseArch, resolution: int | None = None) -> list[BlockSpec]:
        self.check_member(arch)
        config = self.config
        size = self._resolution(arch, resolution)
        stem = config.stem_widths[0]
        specs = [
            BlockSpec("conv", self.in_channels, stem, 3, config.stem_stride, size,
                      act=config.stem_act, bn=True),
        ]  # fmt: skip
        size = conv_output_size(size, 3, config.stem_stride)
        slot = 0
        width = stem
        for stage in config.stages:
            out = stage.widths[0]
            for index in range(stage.max_depth):
                stride = stage.stride if index == 0 else 1
                if stage.searchable:
                    kernel, expand = arch.kernel[slot], arch.expand[slot]
                    slot += 1
                else:
                    kernel, expand = stage.kernels[0], stage.expands[0]
                if expand != SKIP:
                    specs.append(
                        BlockSpec("mbconv", width, out, kernel, stride, size, float(expand),
                                  width * expand, act=stage.act, bn=True,
                                  residual=stride == 1 and width == out)
                    )  # fmt: skip
                    size = conv_output_size(size, kernel, stride)
                width = out
        head = config.head_widths[0]
        specs.append(BlockSpec("conv", width, head, 1, 1, size, act=config.head_act, bn=True))
        specs.append(BlockSpec("pool", head, head, size, 1, size))
        specs.append(BlockSpec("linear", head, self.num_classes, 1, 1, 1, bias=True))
        return specs

    def complexity(self, arch: LayerwiseArch, resolution: int | None = None) -> Complexity:
        macs = params = 0
        for spec in self.blocks(arch, resolution):
            m, p = block_cost(spec)
            macs += m
            params += p
        return Complexity(macs, params)

    def complexity_batch(
        self, archs: Sequence[LayerwiseArch], resolution: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Same arithmetic as ``blocks`` + ``block_cost``, one numpy pass per layer slot."""
        for arch in archs:
            self.check_member(arch)
        layout, config = self._layout, self.config
        n = len(archs)
        values = layout.values(archs)
        if resolution is not None:
            self._resolution(archs[0], resolution) if archs else None
            size: np.ndarray = np.full(n, resolution, dtype=np.int64)
        else:
            size = values[:, 0].copy()
        kernels = values[:, layout.field_slices["kernel"]]
        expands = values[:, layout.field_slices["expand"]]
        stem = config.stem_widths[0]
        macs, params = conv_cost(self.in_channels, stem, 3, config.stem_stride, size, True, False)
        size = conv_output_size(size, 3, config.stem_stride)
        slot = 0
        width = stem
        for stage in config.stages:
            out = stage.widths[0]
            for index in range(stage.max_depth):
                stride = stage.stride if index == 0 else 1
                if stage.searchable:
                    kernel, expand = kernels[:, slot], expands[:, slot]
                    slot += 1
                else:
                    kernel = np.full(n, stage.kernels[0], dtype=np.int64)
                    expand = np.full(n, stage.expands[0], dtype=np.int64)
                run = expand != SKIP
                m, p = mbconv_cost(width, out, width * expand, kernel, stride, size, 0, expand != 1)
                macs = macs + m * run
                params = params + p * run
                size = np.where(run, conv_output_size(size, kernel, stride), size)
                width = out
        head = config.head_widths[0]
        m, p = conv_cost(width, head, 1, 1, size, True, False)
        lm, lp = linear_cost(head, self.num_classes, True)
        return (
            np.asarray(macs + m + lm, dtype=np.int64).reshape(n),
            np.asarray(params + p + lp, dtype=np.int64).reshape(n),
        )

    # --- summary -----------------------------------------------------------------------------
    def describe(self) -> SpaceSummary:
        return self._summary

    @cached_property
    def _summary(self) -> SpaceSummary:
        config = self.config
        groups: dict[tuple[str, tuple[int, ...]], int] = {}
        for gene in self._layout.genes:
            if len(gene.choices) < 2:
                continue
            label = gene.field
            if gene.slot >= 0:  # stages count from 1: config.stages[0] is the fixed first layer
                slot = self._layout.slots[gene.slot]
                first = gene.field == "expand" and not slot.skippable
                label = f"{gene.field}.stage{slot.stage}" + (".first" if first else "")
            groups[(label, gene.choices)] = groups.get((label, gene.choices), 0) + 1
        dimensions = [
            Dimension(
                name=label,
                choices=list(choices),
                slots=slots,
                description=_FIELD_HELP[label.split(".")[0]],
            )
            for (label, choices), slots in groups.items()
        ]
        subnets = self._layout.num_subnets()
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
                self.complexity(smallest, min(config.resolutions)).macs,
                self.complexity(largest, max(config.resolutions)).macs,
            ),
            sources=list(config.sources),
        )

    # --- networks ----------------------------------------------------------------------------
    def build_supernet(
        self, num_classes: int | None = None, in_channels: int | None = None
    ) -> Supernet:
        """Fresh supernet; ``complexity`` describes it when built with this space's defaults."""
        from search_spaces._layerwise_supernet import LayerwiseSupernet

        return LayerwiseSupernet(
            self,
            num_classes=self.num_classes if num_classes is None else num_classes,
            in_channels=self.in_channels if in_channels is None else in_channels,
        )

    def extract(self, supernet: Supernet, arch: LayerwiseArch) -> nn.Module:
        from search_spaces._layerwise_supernet import LayerwiseSupernet

        if not isinstance(supernet, LayerwiseSupernet) or supernet.space.name != self.name:
            raise TypeError(f"expected a supernet of {self.name!r}, got {type(supernet).__name__}")
        self.check_member(arch)
        return supernet.extract(arch)


_FIELD_HELP = {
    "resolution": "input side in pixels",
    "kernel": "depthwise kernel size, per layer (ignored when the layer is skipped)",
    "expand": f"expand ratio, per layer; {SKIP} = skip the layer (identity)",
}
