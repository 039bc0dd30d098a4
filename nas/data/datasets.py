"""Deterministic train / val / holdout splits over any source, as torch datasets.

The holdout split is carved from train (as Once-for-All does) so that accuracy predictors are
built without ever touching val.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch.utils.data import Dataset

from nas.data.readers import read_cifar, read_digits, read_idx, read_imagefolder, read_synthetic
from nas.data.sources import ImageSource, RawDataset
from nas.data.spec import PATH_KINDS, DatasetSpec
from nas.data.transforms import (
    Augmentation,
    Normalizer,
    eval_transform,
    train_transform,
)

# Per-channel mean/std of each kind's images in [0, 1]; CIFAR's are the usual published ones.
_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Grey: one value per channel, the packaged train set's 60,000 28x28 images.
    "fashion_mnist": ((0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530)),
}
_DEFAULT_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def input_normalization(spec: DatasetSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` the splits of ``spec`` normalise with: ``x = (pixels / 255 -
    mean) / std``. Exported subnets record it, since their users must feed the same inputs."""
    mean, std = _NORMALIZATION.get(spec.kind, _DEFAULT_NORMALIZATION)
    if spec.channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


class SplitDataset(Dataset[tuple[torch.Tensor, int]]):
    """A subset of a source with its transform: ``dataset[i]`` is a normalised float CHW image
    (for a notebook or a quick look), ``dataset.raw[i]`` the uint8 image that the input
    pipeline (``nas.data.loading``) ships and normalises per batch on the device.

    An item may be ``(index, seed)``: the augmentation then draws from a generator seeded with
    ``seed`` alone, which is how the pipeline makes an epoch's pixels independent of the
    number of worker processes and of where a run resumed.
    """

    def __init__(
        self,
        source: ImageSource,
        indices: np.ndarray,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        resolution: int,
        augmentation: Augmentation,
    ) -> None:
        self.source = source
        self.indices = indices.astype(np.int64, copy=False)
        self.targets = source.targets[self.indices]
        self.augmentation: Augmentation = augmentation
        self.resolution = resolution
        self.normalizer = Normalizer(mean, std)
        photos = source.photos
        self.transform = (
            train_transform(augmentation, resolution=resolution, photos=photos)
            if self.augment
            else eval_transform(resolution=resolution, photos=photos)
        )
        self.raw = RawItems(self)

    @property
    def augment(self) -> bool:
        return self.augmentation != "none"

    @property
    def in_memory(self) -> bool:
        """Images decoded already (nothing for loader worker processes to speed up)."""
        return not self.source.photos

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def uint8_item(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, seed = item if isinstance(item, tuple) else (item, None)
        generator = None
        if seed is not None and self.augment:
            generator = torch.Generator().manual_seed(int(seed))
        image = self.source.image(int(self.indices[position]))
        return self.transform(image, generator), int(self.targets[position])

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        image, label = self.uint8_item(item)
        return self.normalizer(image), label


class RawItems(Dataset[tuple[torch.Tensor, int]]):
    """The uint8 view of a ``SplitDataset`` (what a ``DataLoader`` collates)."""

    def __init__(self, split: SplitDataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        return self.split.uint8_item(item)

    def __getitems__(self, items: list[int | tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch: ``(uint8 images (N, C, H, W), int64 labels)``. Images in memory at
        the base resolution and not augmented are gathered in one indexing."""
        split = self.split
        positions = np.fromiter(
            (i[0] if isinstance(i, tuple) else i for i in items), dtype=np.int64, count=len(items)
        )
        labels = torch.from_numpy(split.targets[positions])
        images = getattr(split.source, "images", None)
        if (
            images is not None
            and not split.augment
            and images.shape[-1] == split.resolution
            and images.shape[-2] == split.resolution
        ):
            return images[torch.from_numpy(split.indices[positions])], labels
        return torch.stack([split.uint8_item(i)[0] for i in items]), labels


class SplitSummary(BaseModel):
    name: str
    size: int
    augment: bool
    augmentation: Augmentation = "none"


class DatasetSummary(BaseModel):
    """What ``nas data show`` prints and the API returns about a dataset."""

    kind: str
    root: str | None
    num_classes: int
    class_names: list[str]
    resolution: int
    channels: int
    seed: int
    splits: list[SplitSummary]


@dataclass(frozen=True)
class DatasetSplits:
    """The three splits of one dataset plus what a model needs to know about it."""

    spec: DatasetSpec
    train: SplitDataset
    val: SplitDataset
    holdout: SplitDataset
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.spec.channels

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    def summary(self) -> DatasetSummary:
        splits = [
            SplitSummary(name=name, size=len(ds), augment=ds.augment, augmentation=ds.augmentation)
            for name, ds in (("train", self.train), ("val", self.val), ("holdout", self.holdout))
        ]
        return DatasetSummary(
            kind=self.spec.kind,
            root=self.spec.root,
            num_classes=self.num_classes,
            class_names=self.class_names,
            resolution=self.resolution,
            channels=self.in_channels,
            seed=self.spec.seed,
            splits=splits,
        )


def stratified_split(
    targets: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so that each class gives ``round(fraction * its count)`` to the second
    part; both parts sorted, so the same seed gives the same indices in the same order."""
    keep, take = [], []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        n_take = round(fraction * members.size)
        take.append(members[:n_take])
        keep.append(members[n_take:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(take))


def _read(spec: DatasetSpec, data_root: Path | None) -> RawDataset:
    readers: dict[str, Callable[[], RawDataset]] = {
        "digits": lambda: read_digits(spec),
        "synthetic": lambda: read_synthetic(spec),
        "cifar10": lambda: read_cifar(spec, data_root),  # type: ignore[arg-type]
        "cifar100": lambda: read_cifar(spec, data_root),  # type: ignore[arg-type]
        "imagefolder": lambda: read_imagefolder(spec, data_root),  # type: ignore[arg-type]
        "idx": lambda: read_idx(spec, data_root),
        "fashion_mnist": lambda: read_idx(spec, data_root),
    }
    return readers[spec.kind]()


def load_dataset(spec: DatasetSpec, *, data_root: str | Path | None = None) -> DatasetSplits:
    """Read a dataset and split it deterministically into train, val and holdout.

    ``data_root`` is where path-based kinds may read from (the service passes
    ``NAS_DATA_ROOT``); paths that resolve outside it are refused.
    """
    if spec.kind in PATH_KINDS and data_root is None:
        raise ValueError(f"data_root: required to read kind {spec.kind!r} from {spec.root!r}")
    raw = _read(spec, Path(data_root) if data_root is not None else None)
    rng = np.random.default_rng(spec.seed)
    all_train = np.arange(len(raw.train))
    if raw.val is None:
        all_train, val_idx = stratified_split(raw.train.targets, spec.val_fraction, rng)
        val_source = raw.train
    else:
        val_source, val_idx = raw.val, np.arange(len(raw.val))
    in_train, holdout_pos = stratified_split(
        raw.train.targets[all_train], spec.holdout_fraction, rng
    )
    train_idx, holdout_idx = all_train[in_train], all_train[holdout_pos]
    limit = spec.max_train_images
    if limit is not None and train_idx.size > limit:
        _, kept = stratified_split(raw.train.targets[train_idx], limit / train_idx.size, rng)
        train_idx = train_idx[kept]
    if train_idx.size == 0 or val_idx.size == 0:
        raise ValueError(
            "val_fraction/holdout_fraction: leave at least one image in every split "
            f"(train {train_idx.size}, val {val_idx.size}, holdout {holdout_idx.size})"
        )
    mean, std = input_normalization(spec)

    def split(source: ImageSource, indices: np.ndarray, policy: Augmentation) -> SplitDataset:
        return SplitDataset(
            source,
            indices,
            mean=mean,
            std=std,
            resolution=spec.resolution,
            augmentation=policy,
        )

    return DatasetSplits(
        spec=spec,
        train=split(raw.train, train_idx, spec.augmentation),
        val=split(val_source, val_idx, "none"),
        holdout=split(raw.train, holdout_idx, "none"),
        class_names=raw.class_names,
    )
