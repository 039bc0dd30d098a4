"""Datasets for supernet training and search: digits (shipped), CIFAR, ImageFolder, synthetic.

``load_dataset(DatasetSpec(...))`` returns deterministic train / val / holdout splits as torch
datasets. Paths are confined to the data root; CIFAR pickles go through a restricted unpickler.
"""

from __future__ import annotations

from nas.data.datasets import (
    DatasetSplits,
    DatasetSummary,
    SplitDataset,
    SplitSummary,
    input_normalization,
    load_dataset,
    stratified_split,
)
from nas.data.paths import DataPathError, resolve_inside
from nas.data.readers import IdxFormatError, check_dataset_files
from nas.data.safe_pickle import UnsafePickleError, safe_load
from nas.data.spec import DatasetKind, DatasetSpec
from nas.data.transforms import (
    AUGMENTATIONS,
    Augmentation,
    Normalizer,
    pad_crop,
    random_resized_crop,
    resize_batch,
    resize_centre_crop,
)

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "DataPathError",
    "DatasetKind",
    "DatasetSpec",
    "DatasetSplits",
    "DatasetSummary",
    "IdxFormatError",
    "Normalizer",
    "SplitDataset",
    "SplitSummary",
    "UnsafePickleError",
    "check_dataset_files",
    "input_normalization",
    "load_dataset",
    "pad_crop",
    "random_resized_crop",
    "resize_batch",
    "resize_centre_crop",
    "resolve_inside",
    "safe_load",
    "stratified_split",
]
