"""Reproducible batches: the order of an epoch is a function of (seed, epoch) alone.

A resumed run therefore sees exactly the batches an uninterrupted run would, and every
data-parallel worker takes its own slice of the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset


def epoch_order(num_items: int, *, seed: int, epoch: int) -> torch.Tensor:
    """Permutation of ``range(num_items)`` for ``epoch``; independent of every global RNG."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def batches_per_epoch(num_items: int, batch_size: int) -> int:
    """Full global batches only: ragged last batches would change BN statistics per rank."""
    return num_items // batch_size


class BatchSource:
    """Stacked (images, labels) batches of a dataset, cached in memory when not augmented."""

    def __init__(self, dataset: Dataset, *, augment: bool | None = None) -> None:
        self.dataset = dataset
        augmenting = bool(getattr(dataset, "augment", False)) if augment is None else augment
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        if not augmenting:
            images, labels = zip(*(dataset[i] for i in range(len(self))), strict=True)
            self._cache = (torch.stack(images), torch.tensor(labels, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        if self._cache is not None:
            return self._cache[0][index], self._cache[1][index]
        items = [self.dataset[int(i)] for i in index]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    def epoch(
        self,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start..`` of ``epoch``; rank ``r`` gets the r-th slice of each batch."""
        if batch_size % world_size:
            raise ValueError(
                f"batch_size: {batch_size} does not split evenly over {world_size} workers"
            )
        order = epoch_order(len(self), seed=seed, epoch=epoch)
        local = batch_size // world_size
        for b in range(start, batches_per_epoch(len(self), batch_size)):
            chunk = order[b * batch_size : (b + 1) * batch_size]
            yield self.batch(chunk[rank * local : (rank + 1) * local])

    def fixed_batches(
        self, *, batch_size: int, num_batches: int, seed: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``num_batches`` batches every call (BN recalibration data)."""
        order = epoch_order(len(self), seed=seed, epoch=-1)
        count = min(num_batches, max(1, len(self) // batch_size))
        return [self.batch(order[i * batch_size : (i + 1) * batch_size]) for i in range(count)]
