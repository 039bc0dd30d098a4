"""How strategies draw, cross and mutate archs: per arch through the space, or vectorised.

``SpaceOperators`` calls the space contract (``sample``, ``crossover``, ``mutate``) once per
child; it works for any object that follows the contract. ``GenomeOperators`` does the same
thing to a whole generation at once: archs are rows of choice indices over
``space.choices()`` (a "genome"), crossover and mutation are two ``np.where`` calls, and only
the final rows become arch objects. Same distribution as the contract's operators (uniform
crossover; each choice resampled uniformly with probability ``prob``), several times fewer
Python calls; it relies on the contract's promise that choices are independent per position,
and ``tests/test_search.py`` checks its archs against ``space.arch_from_dict`` for every
registered space.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

Offspring = tuple[list[Any], np.ndarray | None]
"""New archs and their genomes (``None`` for operators that keep none)."""


class Operators(abc.ABC):
    """Draws and recombines archs for a strategy; ``genes`` travel with candidates."""

    @abc.abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> Offspring:
        """``n`` uniformly random archs."""

    @abc.abstractmethod
    def genes_of(self, archs: Sequence[Any]) -> np.ndarray | None:
        """Genomes of archs from elsewhere (initial or fallback archs)."""

    @abc.abstractmethod
    def offspring(
        self,
        archs: Sequence[Any],
        genes: np.ndarray | None,
        first: np.ndarray,
        second: np.ndarray,
        cross: np.ndarray,
        mutation_prob: float,
        rng: np.random.Generator,
    ) -> Offspring:
        """Child ``i`` = crossover(parent ``first[i]``, parent ``second[i]``) where
        ``cross[i]``, else a copy of parent ``first[i]``; then each choice resampled with
        probability ``mutation_prob`` (0: no mutation)."""


class SpaceOperators(Operators):
    """The space's own per-arch operators."""

    def __init__(self, space: Any) -> None:
        self.space = space

    def sample(self, n: int, rng: np.random.Generator) -> Offspring:
        return [self.space.sample(rng) for _ in range(n)], None

    def genes_of(self, archs: Sequence[Any]) -> np.ndarray | None:
        return None

    def offspring(
        self,
        archs: Sequence[Any],
        genes: np.ndarray | None,
        first: np.ndarray,
        second: np.ndarray,
        cross: np.ndarray,
        mutation_prob: float,
        rng: np.random.Generator,
    ) -> Offspring:
        space, children = self.space, []
        for i, j, c in zip(first.tolist(), second.tolist(), cross.tolist(), strict=True):
            child = space.crossover(archs[i], archs[j], rng) if c else archs[i]
            if mutation_prob > 0:
                child = space.mutate(child, rng, mutation_prob)
            children.append(child)
        return children, None


class GenomeOperators(Operators):
    """Whole-generation crossover and mutation on ``[N, genes]`` choice-index matrices."""

    def __init__(self, space: Any) -> None:
        self.space = space
        template = space.sample(np.random.default_rng(0), "min").to_dict()
        self._fixed = {"space": template["space"], "preset": template["preset"]}
        self._fields: list[tuple[str, int, int, bool]] = []  # name, start, stop, scalar
        values: list[list[int]] = []
        for name, positions in space.choices().items():
            scalar = not isinstance(template[name], list)
            self._fields.append((name, len(values), len(values) + len(positions), scalar))
            values += [list(p) for p in positions]
        self.num_choices = np.array([len(v) for v in values], dtype=np.int64)
        table = np.zeros((len(values), int(self.num_choices.max())), dtype=np.int64)
        for g, allowed in enumerate(values):
            table[g, : len(allowed)] = allowed
        self._table = table
        self._gene = np.arange(len(values))
        self._index = [{v: i for i, v in enumerate(allowed)} for allowed in values]
        self._build = space.arch_type.model_construct

    @classmethod
    def supports(cls, space: Any) -> bool:
        """Spaces with an ``arch_type`` model and ``choices()`` (every registered space)."""
        return hasattr(space, "arch_type") and hasattr(space, "choices")

    def to_archs(self, genes: np.ndarray) -> list[Any]:
        """Arch objects of genome rows (built without re-validation: every row holds allowed
        values by construction)."""
        rows = self._table[self._gene, genes].tolist()
        build, fixed, fields = self._build, self._fixed, self._fields
        return [
            build(
                **fixed,
                **{
                    name: (row[start] if scalar else tuple(row[start:stop]))
                    for name, start, stop, scalar in fields
                },
            )
            for row in rows
        ]

    def genes_of(self, archs: Sequence[Any]) -> np.ndarray:
        genes = np.zeros((len(archs), self._gene.size), dtype=np.int64)
        for r, arch in enumerate(archs):
            data = arch.to_dict()
            for name, start, _, scalar in self._fields:
                values = [data[name]] if scalar else data[name]
                for offset, value in enumerate(values):
                    genes[r, start + offset] = self._index[start + offset][value]
        return genes

    def _random(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        return (rng.random(shape) * self.num_choices).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> Offspring:
        genes = self._random((n, self._gene.size), rng)
        return self.to_archs(genes), genes

    def offspring(
        self,
        archs: Sequence[Any],
        genes: np.ndarray | None,
        first: np.ndarray,
        second: np.ndarray,
        cross: np.ndarray,
        mutation_prob: float,
        rng: np.random.Generator,
    ) -> Offspring:
        if genes is None:
            genes = self.genes_of(archs)
        children = genes[first]
        shape = children.shape
        if cross.any():
            take_second = (rng.random(shape) < 0.5) & cross[:, None]
            children = np.where(take_second, genes[second], children)
        if mutation_prob > 0:
            resample = rng.random(shape) < mutation_prob
            children = np.where(resample, self._random(shape, rng), children)
        return self.to_archs(children), children


def default_operators(space: Any) -> Operators:
    """Vectorised where the space allows it, the space's own operators otherwise."""
    return GenomeOperators(space) if GenomeOperators.supports(space) else SpaceOperators(space)
