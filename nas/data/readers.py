"""One reader per dataset kind; each returns a ``RawDataset`` of uint8 images.

CIFAR is the "python version" (pickled batches), read with the restricted unpickler.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.data.paths import DataPathError, resolve_inside
from nas.data.safe_pickle import UnsafePickleError, safe_load
from nas.data.sources import ArraySource, FileSource, RawDataset, to_uint8_images
from nas.data.spec import DatasetSpec

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


def read_digits(spec: DatasetSpec) -> RawDataset:
    """scikit-learn's 1,797 real 8x8 digits (values 0..16), upsampled to the base resolution."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x = to_uint8_images(images, resolution=spec.resolution, channels=spec.channels)
    return RawDataset(
        train=ArraySource(x, np.asarray(bunch.target)),
        val=None,
        class_names=[str(c) for c in bunch.target_names],
    )


def read_synthetic(spec: DatasetSpec) -> RawDataset:
    """Deterministic, learnable random images: a per-class pattern plus noise."""
    num_classes = spec.num_classes or 10
    num_samples = spec.num_samples or 512
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.uniform(0, 255, size=(num_classes, spec.channels, 4, 4))
    targets = np.arange(num_samples) % num_classes
    rng.shuffle(targets)
    coarse = to_uint8_images(
        prototypes.round().astype(np.uint8), resolution=spec.resolution, channels=spec.channels
    )
    noise = rng.normal(0, 40, size=(num_samples, spec.channels, spec.resolution, spec.resolution))
    images = np.clip(coarse.numpy()[targets].astype(np.float64) + noise, 0, 255)
    return RawDataset(
        train=ArraySource(torch.from_numpy(images.round().astype(np.uint8)), targets),
        val=None,
        class_names=[f"class_{i}" for i in range(num_classes)],
    )


def _load_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with path.open("rb") as fh:
        batch = safe_load(fh)
    if not isinstance(batch, dict):
        raise UnsafePickleError(f"{path.name}: expected a dict batch, found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UnsafePickleError(f"{path.name}: 'data' must be a uint8 array shaped (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise UnsafePickleError(f"{path.name}: 'data' rows hold {data.shape[1]} values, not 3072")
    if labels is None or len(labels) != data.shape[0]:
        raise UnsafePickleError(f"{path.name}: '{label_key}' must hold one label per image")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _cifar_names(path: Path, key: str, count: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(count)]
    with path.open("rb") as fh:
        meta = safe_load(fh)
    names = meta.get(key.encode()) or meta.get(key) if isinstance(meta, dict) else None
    if not names or len(names) != count:
        return [str(i) for i in range(count)]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


@dataclass(frozen=True)
class _CifarLayout:
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    meta_file: str
    names_key: str
    num_classes: int


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout(
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "labels",
        "batches.meta",
        "label_names",
        10,
    ),
    "cifar100": _CifarLayout(("train",), "test", "fine_labels", "meta", "fine_label_names", 100),
}


def check_dataset_files(spec: DatasetSpec, data_root: Path, *, field: str = "root") -> Path:
    """Resolve ``spec.root`` inside ``data_root`` and check, by file names alone (nothing is
    decoded, so it is cheap), that it holds data of its kind; the resolved root.

    The readers start with it, and the service runs it when a job is submitted, so that an
    empty or wrong folder is refused then and not at the job's first epoch.
    """
    assert spec.root is not None  # guaranteed by DatasetSpec for the kinds read from files
    root = resolve_inside(data_root, spec.root, field=field)
    shown = f"{field}: {reprlib.repr(spec.root)}"
    try:
        if spec.kind in _CIFAR_LAYOUTS:
            layout = _CIFAR_LAYOUTS[spec.kind]
            needed = [*layout.train_files, layout.test_file]
            missing = [n for n in needed if not (root / n).is_file()]
            if missing:
                raise DataPathError(
                    f"{shown} is not a {spec.kind} python-version directory; missing {missing}"
                )
            return root
        if not root.is_dir():
            raise DataPathError(f"{shown} is not a directory")
        train_dir = root / "train" if (root / "train").is_dir() else root
        classes = [p for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(classes) < 2 or not any(_holds_images(c) for c in classes):
            found = f"{len(classes)} class folder(s)" if len(classes) < 2 else "no image"
            raise DataPathError(
                f"{shown} needs at least two class folders holding .png/.jpg images "
                f"(<root>/<class>/*.png, or <root>/train/<class>/...); found {found}"
            )
    except OSError as exc:  # a folder that cannot be listed
        raise DataPathError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    return root


def _holds_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.iterdir())


def read_cifar(spec: DatasetSpec, data_root: Path) -> RawDataset:
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) python batches."""
    root = check_dataset_files(spec, data_root)
    layout = _CIFAR_LAYOUTS[spec.kind]
    label_key, count = layout.label_key, layout.num_classes

    def read(names: list[str]) -> ArraySource:
        parts = [_load_cifar_batch(resolve_inside(data_root, root / n), label_key) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.min() < 0 or labels.max() >= count:
            raise UnsafePickleError(f"{spec.kind}: labels must lie in 0..{count - 1}")
        x = to_uint8_images(images, resolution=spec.resolution, channels=spec.channels)
        return ArraySource(x, labels)

    return RawDataset(
        train=read(list(layout.train_files)),
        val=read([layout.test_file]),
        class_names=_cifar_names(root / layout.meta_file, layout.names_key, count),
    )


def _scan_classes(
    folder: Path, data_root: Path, classes: list[str] | None
) -> tuple[list[str], list[Path], np.ndarray]:
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    elif found and set(found) - set(classes):
        extra = sorted(set(found) - set(classes))
        raise DataPathError(f"root: {folder.name}/ has classes {extra} that train/ does not")
    paths, targets = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(resolve_inside(data_root, file))  # refuses symlinks leading out
                targets.append(label)
    return classes, paths, np.asarray(targets, dtype=np.int64)


def read_imagefolder(spec: DatasetSpec, data_root: Path) -> RawDataset:
    """``root/<class>/*.png|jpg``, or ``root/train/<class>/...`` with an optional ``root/val``."""
    assert spec.root is not None
    root = check_dataset_files(spec, data_root)
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes, paths, targets = _scan_classes(train_dir, data_root, None)
    if len(classes) < 2 or not paths:
        raise DataPathError(
            f"root: {spec.root!r} needs at least two class folders holding .png/.jpg images"
        )
    kw = {"resolution": spec.resolution, "channels": spec.channels}
    val = None
    if train_dir != root and (root / "val").is_dir():
        _, val_paths, val_targets = _scan_classes(root / "val", data_root, classes)
        if val_paths:
            val = FileSource(val_paths, val_targets, **kw)
    return RawDataset(train=FileSource(paths, targets, **kw), val=val, class_names=classes)
