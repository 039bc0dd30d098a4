"""Strict fairness (FairNAS, Chu et al., arXiv:1907.01845): every choice trains every step.

Each step trains ``K`` paths, ``K`` the largest number of choices of any gene (one
``(field, position)`` entry of ``space.choices()``). Per gene a random permutation of its
choices is drawn; path ``k`` takes the ``k``-th element of every gene's permutation, so every
choice of every gene appears exactly once in the step's paths. A gene with fewer than ``K``
choices is wrapped with fresh permutations (each of its choices appears ``floor(K/n)`` or
``ceil(K/n)`` times, at least once). The trainer sums the paths' gradients into one optimizer
step, so every candidate's weights, and every downstream layer's reading of every candidate's
output, are updated on the same batch and the same weights: the sandwich rule instead trains
the max and min candidates every step and leaves the downstream layers blind to the others.

With ``distill`` the largest subnet runs first on labels and the fair paths learn from its soft
predictions (in-place distillation, as in the sandwich rule).

The per-gene structure comes from the space's public contract only: ``choices()`` for the
genes and ``sample(rng, "max")`` for the field shapes (scalar or per-position tuple); fields a
training phase freezes (``frozen``, see ``ShrunkSpace``) keep the largest subnet's value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nas.training.samplers.base import ArchSampler, Subnet


class _Gene(NamedTuple):
    field: str
    position: int  # -1: a scalar field
    choices: tuple[Any, ...]


class _Layout(NamedTuple):
    template: dict[str, Any]  # the largest subnet's fields (space, preset included)
    genes: tuple[_Gene, ...]  # the genes with more than one choice, in ``choices()`` order
    paths: int  # K


def fair_layout(space: Any) -> _Layout:
    """The genes a fair step permutes, from ``space``'s public contract."""
    largest = space.sample(np.random.default_rng(0), "max")  # "max" draws nothing; rng unused
    template = largest.model_dump(mode="python")
    frozen = set(getattr(space, "frozen", ()))  # ShrunkSpace: pinned to the largest subnet
    genes: list[_Gene] = []
    for field, per_position in space.choices().items():
        if field in frozen or field not in template:
            continue
        scalar = not isinstance(template[field], (tuple, list))
        if scalar and len(per_position) != 1:
            raise ValueError(f"choices()[{field!r}] lists {len(per_position)} positions")
        for position, choices in enumerate(per_position):
            if len(choices) > 1:
                genes.append(_Gene(field, -1 if scalar else position, tuple(choices)))
    paths = max((len(g.choices) for g in genes), default=1)
    return _Layout(template, tuple(genes), paths)


class FairSampler(ArchSampler):
    """``K`` paths per step covering every choice of every gene (strict fairness)."""

    name = "fair"

    def __init__(self, *, seed: int, distill: bool = False) -> None:
        super().__init__(seed=seed)
        self.distill = bool(distill)
        if distill:
            self.name = "fair_distill"
        self._layouts: dict[int, tuple[Any, _Layout]] = {}  # by id(space); space kept alive
        self._steps = 0
        self._paths = 0

    def layout(self, space: Any) -> _Layout:
        cached = self._layouts.get(id(space))
        if cached is None or cached[0] is not space:
            cached = (space, fair_layout(space))
            self._layouts[id(space)] = cached
        return cached[1]

    def fair_archs(self, space: Any) -> list[Any]:
        """The step's ``K`` fair paths (the rng draws one permutation per gene and wrap)."""
        layout = self.layout(space)
        k = layout.paths
        fields = [
            {f: list(v) if isinstance(v, (tuple, list)) else v for f, v in layout.template.items()}
            for _ in range(k)
        ]
        for gene in layout.genes:
            n = len(gene.choices)
            order = np.concatenate([self.rng.permutation(n) for _ in range(-(-k // n))])[:k]
            for path, index in zip(fields, order.tolist(), strict=True):
                value = gene.choices[index]
                if gene.position < 0:
                    path[gene.field] = value
                else:
                    path[gene.field][gene.position] = value
        return [space.arch_from_dict(path) for path in fields]

    def plan(self, space: Any) -> list[Subnet]:
        paths = [Subnet("random", arch) for arch in self.fair_archs(space)]
        self._steps += 1
        self._paths += len(paths)
        if self.distill:
            return [Subnet("max", space.sample(self.rng, "max")), *paths]
        return paths

    def metrics(self) -> dict[str, Any]:
        return {"fair_paths_per_step": self._paths / max(self._steps, 1)}

    def reset_metrics(self) -> None:
        self._steps = self._paths = 0
