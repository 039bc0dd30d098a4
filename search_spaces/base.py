"""The search-space contract: what every space promises to the trainer, searcher and service.

Torch-free on import (the REST API lists spaces without loading torch); methods that build
networks import it lazily.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from search_spaces.blocks import BlockSpec

if TYPE_CHECKING:
    from torch import nn

    from search_spaces.supernet import Supernet

SampleMode = Literal["random", "min", "max"]
SAMPLE_MODES: tuple[str, ...] = ("random", "min", "max")


class Complexity(NamedTuple):
    """Multiply-accumulates and parameter count of one subnet (see ``search_spaces.blocks``)."""

    macs: int
    params: int


class Dimension(BaseModel):
    """One searchable dimension: ``slots`` independent choices among ``choices``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    choices: list[int]
    slots: int
    description: str


class SpaceSummary(BaseModel):
    """What a space is, for docs, the API and sanity checks; every figure is computed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    preset: str
    num_classes: int
    resolutions: list[int]
    default_resolution: int
    dimensions: list[Dimension]
    num_subnets: int
    """Distinct networks, resolution not counted; choices inside skipped blocks not counted."""
    num_subnets_with_resolution: int
    """``num_subnets`` times the number of resolutions."""
    min_macs: int
    max_macs: int
    min_params: int
    max_params: int
    """Min/max MACs and params of the smallest/largest subnet at ``default_resolution``."""
    macs_over_resolutions: tuple[int, int]
    """Smallest subnet at the smallest resolution, largest at the largest."""
    sources: list[str]


class TrainingRecipe(NamedTuple):
    """How a space's supernet is trained by default: names of ``nas.training`` schedules and
    samplers (plain strings, so this module stays free of the trainer); a config overrides."""

    schedule: str
    sampler: str


class SearchSpace(abc.ABC):
    """A family of subnets sharing one supernet's weights.

    Contract (every implementation, checked by ``tests/test_search_spaces.py``):

    - Instances are immutable and thread-safe; ``search_spaces.get`` caches them.
    - ``arch_type`` is a frozen pydantic model (``extra="forbid"``) naming its ``space`` and
      ``preset``; constructing one validates every choice against this space's preset and
      raises ``pydantic.ValidationError`` naming the field (``kernel[3]``) and the allowed
      values. Archs are hashable; two archs are the same *network* iff their ids are equal.
    - ``arch_id`` is the first 16 hex chars of the sha256 of the canonical JSON of the
      normalised arch (choices inside blocks skipped by elastic depth replaced by a canonical
      value), so ids survive JSON round trips and ignore skipped blocks.
    - ``sample``, ``mutate`` and ``crossover`` only ever return valid archs; randomness comes
      from the ``rng`` passed in, never from global state.
    - ``encode`` returns a fixed-length float32 vector (``encoding_dim``): a one-hot per
      choice with more than one option, zero for skipped blocks; ``encode_batch`` equals the
      stacked ``encode`` results.
    - ``blocks`` lists the concrete layers (``BlockSpec``); ``complexity`` is computed from
      them analytically and equals what a forward-hook counter reads on the extracted model.
    - ``build_supernet`` returns a ``Supernet`` whose ``set_active(arch)`` selects a subnet;
      its forward accepts any input size (the trainer resizes to ``arch.resolution``).
    - ``extract`` returns a plain-torch static model with copied weights and BN statistics,
      scriptable with ``torch.jit.script``, computing what the supernet computes for that
      arch; it leaves the supernet's active arch unchanged.
    """

    name: str
    preset: str
    num_classes: int
    in_channels: int
    resolutions: tuple[int, ...]
    default_resolution: int
    arch_type: type[BaseModel]
    default_training: TrainingRecipe = TrainingRecipe("single_stage", "sandwich")
    """BigNAS's single-stage sandwich unless a space says otherwise."""

    # --- archs -------------------------------------------------------------------------------
    @abc.abstractmethod
    def arch_from_dict(self, data: dict[str, Any]) -> Any:
        """Validate ``data`` (``space``/``preset`` may be omitted) as an arch of this space."""

    @abc.abstractmethod
    def arch_id(self, arch: Any) -> str:
        """Stable 16-hex-char id of the network ``arch`` describes."""

    @abc.abstractmethod
    def choices(self) -> dict[str, list[list[int]]]:
        """Allowed values of every arch field, one list per position (``[[...]]`` for scalars)."""

    @abc.abstractmethod
    def reference_archs(self) -> dict[str, Any]:
        """Named archs (at least ``"min"`` and ``"max"``, plus published models in the space)."""

    # --- search operators --------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, mode: SampleMode = "random") -> Any:
        """Uniform choice per dimension (``random``), or the smallest/largest subnet."""

    @abc.abstractmethod
    def mutate(self, arch: Any, rng: np.random.Generator, prob: float) -> Any:
        """Resample each choice independently with probability ``prob``."""

    @abc.abstractmethod
    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> Any:
        """Uniform crossover: each choice taken from ``a`` or ``b`` with equal probability."""

    @property
    @abc.abstractmethod
    def encoding_dim(self) -> int:
        """Length of ``encode``'s vector."""

    @abc.abstractmethod
    def encode(self, arch: Any) -> np.ndarray:
        """Fixed-length float32 feature vector (predictor input)."""

    @abc.abstractmethod
    def encode_batch(self, archs: Sequence[Any]) -> np.ndarray:
        """``[N, encoding_dim]`` float32, vectorised."""

    # --- structure and cost ------------------------------------------------------------------
    @abc.abstractmethod
    def blocks(self, arch: Any, resolution: int | None = None) -> list[BlockSpec]:
        """Concrete layers at ``resolution`` (default ``arch.resolution``)."""

    @abc.abstractmethod
    def complexity(self, arch: Any, resolution: int | None = None) -> Complexity:
        """MACs and params from ``blocks``; no forward pass."""

    @abc.abstractmethod
    def complexity_batch(
        self, archs: Sequence[Any], resolution: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``complexity``: int64 arrays ``(macs, params)`` of length N."""

    @abc.abstractmethod
    def describe(self) -> SpaceSummary:
        """Dimensions, exact subnet count, MACs/params ranges."""

    # --- networks (import torch) -------------------------------------------------------------
    @abc.abstractmethod
    def build_supernet(
        self, num_classes: int | None = None, in_channels: int | None = None
    ) -> Supernet:
        """Fresh supernet; ``None`` means this space's ``num_classes`` / ``in_channels``."""

    @abc.abstractmethod
    def extract(self, supernet: Supernet, arch: Any) -> nn.Module:
        """Static model of ``arch`` with weights and BN statistics copied from ``supernet``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, preset={self.preset!r})"
