"""The input pipeline: ``torch.utils.data`` loaders for training, BN recalibration and
evaluation, all yielding normalised float batches on the model's device.

What crosses a process boundary or the host-to-device copy is uint8 (a quarter of float32);
the float conversion and normalisation happen per batch where the batch lands. Worker
processes decode and augment; pinned memory and ``non_blocking`` copies overlap the copy with
compute on a GPU. Nothing here holds a split as float32: training and evaluation stream, and
only the few fixed BN-recalibration batches are kept (as uint8).

Order and augmentation are functions of (seed, epoch, position) alone (``EpochSampler``), so
a resumed run sees exactly the batches of an uninterrupted one, whatever the worker count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from nas.data.datasets import RawItems, SplitDataset

Batch = tuple[torch.Tensor, torch.Tensor]

#: Default worker processes never exceed this many per loader (decoding scales, memory grows).
MAX_DEFAULT_WORKERS = 8


def epoch_order(num_items: int, *, seed: int, epoch: int) -> torch.Tensor:
    """Permutation of ``range(num_items)`` for ``epoch``; independent of every global RNG."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def batches_per_epoch(num_items: int, batch_size: int) -> int:
    """Full global batches only: ragged last batches would change BN statistics per rank."""
    return num_items // batch_size


def augmentation_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of one image's augmentation: a mix of (seed, epoch, position in the epoch)
    that fits a ``torch.Generator`` (63 bits)."""
    value = (seed * 0x9E3779B97F4A7C15 + (epoch + 2) * 0xBF58476D1CE4E5B9 + position) & (
        (1 << 64) - 1
    )
    value ^= value >> 31
    value = (value * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (value ^ (value >> 29)) & ((1 << 63) - 1)


def process_cpus() -> int:
    """CPUs this process was given: ``OMP_NUM_THREADS`` where a scheduler set it (Ray does, to
    the task's CPUs), else the CPUs it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return len(os.sched_getaffinity(0))


def default_num_workers(split: SplitDataset, requested: int | None = None) -> int:
    """``requested`` when given; 0 for images already in memory (a worker would only add a
    copy); else one fewer than the process's CPUs, at most ``MAX_DEFAULT_WORKERS``."""
    if requested is not None:
        return requested
    if split.in_memory:
        return 0
    return max(0, min(MAX_DEFAULT_WORKERS, process_cpus() - 1))


class EpochSampler(DistributedSampler):
    """A seeded ``DistributedSampler`` whose epoch order is ``epoch_order(seed, epoch)`` cut
    into full global batches of ``batch_size``; rank ``r`` takes the r-th slice of each, so
    the ranks' shards are disjoint and together cover every full batch. ``set_epoch`` as in
    torch; ``set_start(b)`` skips the epoch's first ``b`` global batches (a resumed run).
    Yields ``(position, augmentation seed)`` items for ``SplitDataset``."""

    def __init__(
        self,
        dataset: SplitDataset | RawItems,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch_size: {batch_size} does not split evenly over {world_size} workers"
            )
        super().__init__(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.batch_size = batch_size
        self.local_batch_size = batch_size // world_size
        self.start_batch = 0

    @property
    def num_batches(self) -> int:
        return batches_per_epoch(len(self.dataset), self.batch_size)  # type: ignore[arg-type]

    def set_start(self, batch: int) -> None:
        if not 0 <= batch <= self.num_batches:
            raise ValueError(f"start: must lie in [0, {self.num_batches}], got {batch}")
        self.start_batch = batch

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        order = epoch_order(len(self.dataset), seed=self.seed, epoch=self.epoch)  # type: ignore[arg-type]
        local, offset = self.local_batch_size, self.rank * self.local_batch_size
        for b in range(self.start_batch, self.num_batches):
            first = b * self.batch_size + offset
            for position in range(first, first + local):
                yield int(order[position]), augmentation_seed(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return (self.num_batches - self.start_batch) * self.local_batch_size


def _batched(batch: Batch) -> Batch:
    """``RawItems.__getitems__`` returns whole batches already (one gather, no re-stacking)."""
    return batch


def _checked(split: object) -> SplitDataset:
    if not isinstance(split, SplitDataset):
        raise TypeError(
            f"split: expected a split of nas.data.load_dataset (a SplitDataset), got "
            f"{type(split).__name__}; to train on part of a dataset, set "
            "DatasetSpec.max_train_images"
        )
    return split


def _loader(
    split: SplitDataset,
    *,
    batch_size: int,
    sampler: Sequence[int] | EpochSampler,
    num_workers: int,
    device: torch.device,
    generator_seed: int = 0,
) -> DataLoader:
    workers = num_workers > 0
    return DataLoader(
        split.raw,
        batch_size=batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=_batched,
        pin_memory=device.type == "cuda",
        persistent_workers=workers,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator().manual_seed(generator_seed),
    )


class _OnDevice:
    """Moves uint8 batches to ``device`` (non-blocking from pinned memory) and normalises
    them there; channels_last when the model runs so."""

    def __init__(self, split: SplitDataset, device: torch.device, channels_last: bool) -> None:
        self.normalizer = split.normalizer
        self.device = device
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        non_blocking = self.device.type == "cuda"
        x = self.normalizer(images.to(self.device, non_blocking=non_blocking))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=non_blocking)


class TrainBatches:
    """One rank's training batches, epoch by epoch: ``epoch(e, start=b)`` yields the global
    batches ``b..`` of epoch ``e`` (this rank's slice of each), normalised on ``device``."""

    def __init__(
        self,
        split: SplitDataset,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int | None = None,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        self.split = split = _checked(split)
        self.device = torch.device(device)
        self.sampler = EpochSampler(
            split.raw, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size
        )
        self.num_workers = default_num_workers(split, num_workers)
        self.loader = _loader(
            split,
            batch_size=self.sampler.local_batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            device=self.device,
            generator_seed=seed,
        )
        self._to_device = _OnDevice(split, self.device, channels_last)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.num_batches

    def epoch(self, epoch: int, *, start: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(start)
        for images, labels in self.loader:
            yield self._to_device(images, labels)


class EvalBatches:
    """Every image of a split once, in order, in batches of ``batch_size``, normalised on
    ``device``; re-iterable (each pass streams the split anew, so nothing is held)."""

    def __init__(
        self,
        split: SplitDataset,
        *,
        batch_size: int = 256,
        num_workers: int | None = None,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if len(_checked(split)) == 0:
            raise ValueError("split: is empty; nothing to evaluate")
        self.split = split
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.num_workers = default_num_workers(split, num_workers)
        self.loader = _loader(
            split,
            batch_size=batch_size,
            sampler=range(len(split)),
            num_workers=self.num_workers,
            device=self.device,
        )
        self._to_device = _OnDevice(split, self.device, channels_last)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels in self.loader:
            yield self._to_device(images, labels)


class FixedBatches:
    """The same ``num_batches`` batches of a split on every pass (BN recalibration data): read
    once, kept as uint8 (``num_batches x batch_size`` images, never the split), normalised on
    ``device`` per pass."""

    def __init__(
        self,
        split: SplitDataset,
        *,
        batch_size: int,
        num_batches: int,
        seed: int,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        split = _checked(split)
        order = epoch_order(len(split), seed=seed, epoch=-1)
        count = min(num_batches, max(1, len(split) // batch_size))
        self._batches: list[Batch] = []
        for b in range(count):
            positions = range(b * batch_size, min((b + 1) * batch_size, len(split)))
            items = [(int(order[p]), augmentation_seed(seed, -1, p)) for p in positions]
            self._batches.append(split.raw.__getitems__(items))
        self._to_device = _OnDevice(split, self.device, channels_last)

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels in self._batches:
            yield self._to_device(images, labels)
