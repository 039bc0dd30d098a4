"""One reader per dataset kind; each returns a ``RawDataset`` of uint8 images.

CIFAR is the "python version" (pickled batches), read with the restricted unpickler; IDX is
the MNIST file format (``idx``, and ``fashion_mnist`` from the Debian package
``dataset-fashion-mnist`` or a folder under the data root), parsed with numpy.
"""

from __future__ import annotations

import gzip
import reprlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data import paths
from nas.data.paths import FASHION_MNIST_APT, DataPathError, resolve_inside
from nas.data.safe_pickle import UnsafePickleError, safe_load
from nas.data.sources import ArraySource, FileSource, RawDataset, to_uint8_images
from nas.data.spec import OPTIONAL_ROOT_KINDS, DatasetSpec

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


def check_dataset_files(spec: DatasetSpec, data_root: Path | None, *, field: str = "root") -> Path:
    """Resolve ``spec.root`` inside ``data_root`` and check, by file names alone (nothing is
    decoded, so it is cheap), that it holds data of its kind; the resolved root.

    ``fashion_mnist`` without a root checks the installed package's folder instead (a
    ``DataPathError`` naming the sibling ``kind`` field of ``field`` and the ``apt-get install``
    command when it is missing); ``data_root`` is only needed when there is a root.

    The readers start with it, and the service runs it when a job is submitted, so that an
    empty or wrong folder is refused then and not at the job's first epoch.
    """
    if spec.root is None and spec.kind in OPTIONAL_ROOT_KINDS:
        return _check_packaged_fashion_mnist(spec, field)
    assert spec.root is not None  # guaranteed by DatasetSpec for the kinds read from files
    if data_root is None:
        raise ValueError(f"data_root: required to read kind {spec.kind!r} from {spec.root!r}")
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
        if spec.kind in IDX_KINDS:
            if not root.is_dir():
                raise DataPathError(f"{shown} is not a directory")
            missing = _missing_idx_files(root)
            if missing:
                raise DataPathError(
                    f"{shown} is not an IDX (MNIST-format) directory; missing {missing} "
                    "(each raw or gzipped, <name>.gz)"
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


def _sibling(field: str, name: str) -> str:
    """``dataset.root`` -> ``dataset.kind``: the field of the same object called ``name``."""
    parent, dot, _ = field.rpartition(".")
    return f"{parent}{dot}{name}"


def _check_packaged_fashion_mnist(spec: DatasetSpec, field: str) -> Path:
    folder = paths.FASHION_MNIST_PACKAGE
    try:
        missing = _missing_idx_files(folder) if folder.is_dir() else None
    except OSError:
        missing = None
    if missing is None or missing:
        lacks = f"no folder {str(folder)!r}" if missing is None else f"{folder} lacks {missing}"
        raise DataPathError(
            f"{_sibling(field, 'kind')}: {spec.kind!r} without a root reads the Debian package "
            f"dataset-fashion-mnist, which is not installed here ({lacks}); install it "
            f"({FASHION_MNIST_APT}) on every machine that runs jobs, or give a root: a folder "
            "under the data root holding the four IDX files"
        )
    return folder.resolve()


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


class IdxFormatError(ValueError):
    """An IDX (MNIST-format) file that is not what its name says: another magic number, fewer
    bytes than its header promises, labels that do not match the images one to one."""


#: The kinds read from IDX files, with their class names (the label is the index).
IDX_KINDS: dict[str, tuple[str, ...]] = {
    "idx": tuple(str(i) for i in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
#: Each split's (images, labels) files under the root, raw or gzipped (``<name>.gz``); the
#: t10k (test) files are the val split, as CIFAR's test batch is.
_IDX_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES = 0x00000803  # unsigned bytes (0x08), 3 dimensions: images, rows, columns
_IDX_LABELS = 0x00000801  # unsigned bytes (0x08), 1 dimension: labels
_IDX_MAX_SIDE = 4096
_IDX_MAX_BYTES = 8 * 2**30  # what a generated (synthetic) dataset may take too
_READ_CHUNK = 2**20
_RESIZE_CHUNK = 2048  # images resized per float batch: never a float copy of a whole split


def _idx_file(root: Path, name: str) -> Path:
    """``root/name`` when it is a file, else ``root/name.gz``."""
    raw = root / name
    return raw if raw.is_file() else root / f"{name}.gz"


def _missing_idx_files(root: Path) -> list[str]:
    names = [name for pair in _IDX_SPLITS.values() for name in pair]
    return [n for n in names if not _idx_file(root, n).is_file()]


def _read_into(fh: Any, out: np.ndarray) -> int:
    """Fill the flat uint8 ``out`` from ``fh`` in chunks; the number of bytes there were."""
    view = memoryview(out)
    filled = 0
    while filled < len(view):
        got = fh.readinto(view[filled : filled + _READ_CHUNK])
        if not got:
            break
        filled += got
    return filled


def _read_idx(path: Path, name: str, *, images: bool) -> tuple[tuple[int, ...], np.ndarray]:
    """``(dims, flat uint8 data)`` of the IDX file ``path`` of unsigned bytes, called ``name``
    in its folder (gzipped when that ends with ``.gz``): images (N, rows, columns) or labels
    (N,). The header is big-endian: a magic number whose last bytes are the type (0x08) and the
    number of dimensions, then each dimension as a uint32."""
    magic, ndim, what = (_IDX_IMAGES, 3, "image") if images else (_IDX_LABELS, 1, "label")
    try:
        with gzip.open(path, "rb") if name.endswith(".gz") else path.open("rb") as fh:
            head = fh.read(4)
            found = int.from_bytes(head, "big") if len(head) == 4 else None
            if found != magic:
                shown = f"0x{found:08x}" if found is not None else f"only {len(head)} byte(s)"
                gzipped = head[:2] == b"\x1f\x8b"
                raise IdxFormatError(
                    f"{name}: not an IDX {what} file: found {shown} where its magic number "
                    f"0x{magic:08x} (unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}) "
                    "belongs" + (f"; the file is gzipped: name it {name}.gz" if gzipped else "")
                )
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise IdxFormatError(
                    f"{name}: truncated: the header ends after {4 + len(raw_dims)} bytes; an "
                    f"IDX {what} file's header has {4 + 4 * ndim}"
                )
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            if images and not all(1 <= side <= _IDX_MAX_SIDE for side in dims[1:]):
                raise IdxFormatError(
                    f"{name}: its header says images of {dims[1]}x{dims[2]}; each side must "
                    f"lie in 1..{_IDX_MAX_SIDE}"
                )
            count = int(np.prod(dims, dtype=np.int64))
            if count > _IDX_MAX_BYTES:
                raise IdxFormatError(
                    f"{name}: its header says {count:,} bytes of data; at most "
                    f"{_IDX_MAX_BYTES // 2**30} GiB are read"
                )
            data = np.empty(count, dtype=np.uint8)
            got = _read_into(fh, data)
    except EOFError as exc:  # a gzip stream cut short
        raise IdxFormatError(f"{name}: truncated: {exc}") from None
    except (OSError, zlib.error) as exc:  # not gzip after all, or a damaged stream
        raise IdxFormatError(f"{name}: cannot be read: {exc}") from None
    if got < count:
        promised = (
            f"{dims[0]:,} images of {dims[1]}x{dims[2]} ({count:,} bytes of pixels)"
            if images
            else f"{dims[0]:,} labels ({count:,} bytes)"
        )
        raise IdxFormatError(
            f"{name}: truncated: its header says {promised}, the file holds {got:,} after "
            "the header"
        )
    return dims, data


def _idx_images(pixels: np.ndarray, dims: tuple[int, ...], spec: DatasetSpec) -> torch.Tensor:
    """(N, channels, resolution, resolution) uint8, resized a chunk at a time."""
    n, rows, cols = dims
    images = torch.from_numpy(pixels).view(n, 1, rows, cols)
    side = spec.resolution
    if (rows, cols) != (side, side):
        resized = torch.empty((n, 1, side, side), dtype=torch.uint8)
        for start in range(0, n, _RESIZE_CHUNK):
            chunk = images[start : start + _RESIZE_CHUNK]
            resized[start : start + _RESIZE_CHUNK] = to_uint8_images(
                chunk, resolution=side, channels=1
            )
        images = resized
    if spec.channels != 1:  # grey copied to every channel: a uint8 copy, no float
        images = to_uint8_images(images, resolution=side, channels=spec.channels)
    return images


def read_idx(spec: DatasetSpec, data_root: Path | None) -> RawDataset:
    """IDX files (``idx``, ``fashion_mnist``): train from ``train-*``, val from ``t10k-*``."""
    root = check_dataset_files(spec, data_root)
    # Each file resolved again (a file symlink inside the root must not lead out of it).
    base = root if spec.root is None or data_root is None else data_root
    names = IDX_KINDS[spec.kind]

    def read(split: str) -> ArraySource:
        image_file, label_file = (_idx_file(root, name) for name in _IDX_SPLITS[split])
        dims, pixels = _read_idx(resolve_inside(base, image_file), image_file.name, images=True)
        _, labels = _read_idx(resolve_inside(base, label_file), label_file.name, images=False)
        if labels.shape[0] != dims[0]:
            raise IdxFormatError(
                f"{image_file.name} holds {dims[0]:,} images but {label_file.name} holds "
                f"{labels.shape[0]:,} labels; they must match one to one"
            )
        wrong = np.flatnonzero(labels >= len(names))
        if wrong.size:
            raise IdxFormatError(
                f"{label_file.name}: label {int(labels[wrong[0]])} at index {int(wrong[0])} "
                f"({wrong.size:,} out of range in all); {spec.kind} labels lie in "
                f"0..{len(names) - 1}"
            )
        return ArraySource(_idx_images(pixels, dims, spec), labels.astype(np.int64))

    return RawDataset(train=read("train"), val=read("val"), class_names=list(names))


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
