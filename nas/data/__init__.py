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
from nas.data.readers import check_dataset_files
from nas.data.safe_pickle import UnsafePickleError, safe_load
from nas.data.spec import DatasetKind, DatasetSpec
from nas.data.transforms import random_crop_flip, resize_batch

__all__ = [
    "DataPathError",
    "DatasetKind",
    "DatasetSpec",
    "DatasetSplits",
    "DatasetSummary",
    "SplitDataset",
    "SplitSummary",
    "UnsafePickleError",
    "check_dataset_files",
    "input_normalization",
    "load_dataset",
    "random_crop_flip",
    "resize_batch",
    "resolve_inside",
    "safe_load",
    "stratified_split",
]
