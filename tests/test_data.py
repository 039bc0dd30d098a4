"""The data layer: digits, CIFAR and ImageFolder readers, deterministic splits, path safety."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from nas.data import (
    DataPathError,
    DatasetSpec,
    UnsafePickleError,
    check_dataset_files,
    input_normalization,
    load_dataset,
    resize_batch,
    resolve_inside,
)
from nas.data.readers import IdxFormatError

# scikit-learn's digits: 1,797 images of 10 classes. Default fractions: val 20% of all
# (stratified), holdout 10% of the rest.
DIGITS_TOTAL, DIGITS_TRAIN, DIGITS_VAL, DIGITS_HOLDOUT = 1797, 1295, 359, 143


def test_digits_documented_sizes_and_shapes() -> None:
    splits = load_dataset(DatasetSpec(kind="digits"))
    assert (len(splits.train), len(splits.val), len(splits.holdout)) == (
        DIGITS_TRAIN,
        DIGITS_VAL,
        DIGITS_HOLDOUT,
    )
    assert len(splits.train) + len(splits.val) + len(splits.holdout) == DIGITS_TOTAL
    assert splits.num_classes == 10 and splits.in_channels == 3 and splits.resolution == 32
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= label < 10
    # Stratified: every class is in every split.
    for split in (splits.train, splits.val, splits.holdout):
        assert set(np.unique(split.targets)) == set(range(10))


def test_digits_one_channel_other_resolution() -> None:
    splits = load_dataset(DatasetSpec(kind="digits", channels=1, resolution=16))
    image, _ = splits.val[3]
    assert image.shape == (1, 16, 16)


def test_splits_are_deterministic_and_disjoint() -> None:
    a = load_dataset(DatasetSpec(kind="digits", seed=7))
    b = load_dataset(DatasetSpec(kind="digits", seed=7))
    c = load_dataset(DatasetSpec(kind="digits", seed=8))
    for name in ("train", "val", "holdout"):
        assert np.array_equal(getattr(a, name).indices, getattr(b, name).indices)
    assert not np.array_equal(a.val.indices, c.val.indices)
    train, val, holdout = (set(s.indices.tolist()) for s in (a.train, a.val, a.holdout))
    assert not (train & val) and not (train & holdout) and not (val & holdout)
    assert torch.equal(a.train[5][0], b.train[5][0])


def _write_cifar10(root: Path, per_batch: int = 6) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with (root / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    names = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
    with (root / "batches.meta").open("wb") as fh:
        pickle.dump(names, fh, protocol=2)


def test_cifar10_reads_python_batches(data_root: Path) -> None:
    _write_cifar10(data_root / "cifar-10-batches-py")
    splits = load_dataset(
        DatasetSpec(kind="cifar10", root="cifar-10-batches-py", holdout_fraction=0.0),
        data_root=data_root,
    )
    assert len(splits.val) == 6 and len(splits.train) + len(splits.holdout) == 30
    assert splits.class_names == [f"c{i}" for i in range(10)]
    assert splits.train.augment and not splits.val.augment
    image, label = splits.val[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    # The pixels are the file's, in CHW order, normalised with the CIFAR-10 statistics.
    with (data_root / "cifar-10-batches-py" / "test_batch").open("rb") as fh:
        raw = pickle.load(fh)[b"data"][0].reshape(3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    expected = (torch.from_numpy(raw).float() / 255 - mean) / std
    assert torch.allclose(image, expected, atol=1e-5)


def test_cifar100_reads_train_and_test(data_root: Path) -> None:
    root = data_root / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(1)
    for name, count in (("train", 40), ("test", 10)):
        batch = {
            "fine_labels": rng.integers(0, 100, count).tolist(),
            "coarse_labels": rng.integers(0, 20, count).tolist(),
            "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }
        (root / name).write_bytes(pickle.dumps(batch))
    splits = load_dataset(
        DatasetSpec(kind="cifar100", root=str(root), resolution=24), data_root=data_root
    )
    assert splits.num_classes == 100 and len(splits.val) == 10
    assert splits.val[0][0].shape == (3, 24, 24)


class _Payload:
    """Stands for any object a malicious pickle might carry."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        {b"data": _Payload(), b"labels": [0]},
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"extra": Path("/etc")},
        {b"data": np.array([object()], dtype=object), b"labels": [0]},
    ],
    ids=["reduce-to-os-system", "other-class", "object-array"],
)
def test_cifar_pickle_with_other_object_is_refused(data_root: Path, payload: dict) -> None:
    _write_cifar10(data_root / "c10")
    (data_root / "c10" / "data_batch_3").write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match=r"refused|Python objects|holds a"):
        load_dataset(DatasetSpec(kind="cifar10", root="c10"), data_root=data_root)


def test_cifar_batch_of_wrong_shape_is_refused(data_root: Path) -> None:
    _write_cifar10(data_root / "c10")
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (data_root / "c10" / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(UnsafePickleError, match="3072"):
        load_dataset(DatasetSpec(kind="cifar10", root="c10"), data_root=data_root)


def _write_images(folder: Path, classes: dict[str, int], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(folder / name / f"img{i}{suffix}")


def test_imagefolder_flat_layout(data_root: Path) -> None:
    _write_images(data_root / "flowers", {"rose": 10, "tulip": 10}, (40, 30))
    (data_root / "flowers" / "rose" / "notes.txt").write_text("not an image")
    splits = load_dataset(
        DatasetSpec(kind="imagefolder", root="flowers", resolution=16), data_root=data_root
    )
    assert splits.class_names == ["rose", "tulip"]
    assert len(splits.train) + len(splits.val) + len(splits.holdout) == 20
    assert splits.train[0][0].shape == (3, 16, 16)


def test_imagefolder_train_val_layout(data_root: Path) -> None:
    _write_images(data_root / "pets" / "train", {"cat": 6, "dog": 6}, (20, 20))
    _write_images(data_root / "pets" / "val", {"cat": 2, "dog": 3}, (20, 20))
    splits = load_dataset(
        DatasetSpec(kind="imagefolder", root="pets", channels=1), data_root=data_root
    )
    assert len(splits.val) == 5 and sorted(splits.val.targets.tolist()) == [0, 0, 1, 1, 1]
    assert splits.val[0][0].shape == (1, 32, 32)


def test_path_outside_data_root_is_refused(data_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    _write_cifar10(outside)
    for root in ("../elsewhere", str(outside), "/etc"):
        with pytest.raises(DataPathError, match="outside the data root"):
            load_dataset(DatasetSpec(kind="cifar10", root=root), data_root=data_root)
    (data_root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataPathError, match="outside the data root"):
        load_dataset(DatasetSpec(kind="cifar10", root="link"), data_root=data_root)


def test_symlinked_file_leading_out_is_refused(data_root: Path, tmp_path: Path) -> None:
    _write_images(data_root / "set", {"a": 2, "b": 2}, (8, 8))
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    (data_root / "set" / "a" / "leak.png").symlink_to(secret)
    with pytest.raises(DataPathError, match="outside the data root"):
        load_dataset(DatasetSpec(kind="imagefolder", root="set"), data_root=data_root)


def test_missing_path_is_reported(data_root: Path) -> None:
    with pytest.raises(DataPathError, match="does not exist"):
        resolve_inside(data_root, "nope")


def test_unknown_kind_names_the_field_and_choices() -> None:
    with pytest.raises(ValidationError) as info:
        DatasetSpec.model_validate({"kind": "mnist"})
    error = info.value.errors()[0]
    assert error["loc"] == ("kind",)
    assert "digits" in error["msg"] and "imagefolder" in error["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("val_fraction", 1.5), ("val_fraction", 0.0), ("holdout_fraction", -0.1)],
)
def test_bad_split_fraction_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        DatasetSpec.model_validate({"kind": "digits", field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_fractions_that_empty_a_split_are_refused() -> None:
    spec = DatasetSpec(kind="synthetic", num_samples=20, num_classes=10, val_fraction=0.01)
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset(spec)


def test_kind_specific_fields_are_checked() -> None:
    with pytest.raises(ValidationError, match="root: required"):
        DatasetSpec(kind="cifar10")
    with pytest.raises(ValidationError, match=r"root: 'x' is not used by kind 'digits'"):
        DatasetSpec(kind="digits", root="x")
    with pytest.raises(ValidationError, match="synthetic"):
        DatasetSpec(kind="digits", num_classes=3)
    with pytest.raises(ValidationError, match="extra"):
        DatasetSpec.model_validate({"kind": "digits", "colour": "red"})


def test_path_kinds_need_a_data_root() -> None:
    with pytest.raises(ValueError, match="data_root"):
        load_dataset(DatasetSpec(kind="cifar10", root="x"))


def test_synthetic_is_deterministic_and_learnable() -> None:
    spec = DatasetSpec(kind="synthetic", num_samples=200, num_classes=4, resolution=12)
    a, b = load_dataset(spec), load_dataset(spec)
    assert torch.equal(a.train[0][0], b.train[0][0])
    # Class means are far apart relative to the noise: nearest-mean classifies most of val.
    train_x = torch.stack([a.train[i][0] for i in range(len(a.train))]).flatten(1)
    means = torch.stack([train_x[torch.as_tensor(a.train.targets) == c].mean(0) for c in range(4)])
    val_x = torch.stack([a.val[i][0] for i in range(len(a.val))]).flatten(1)
    predicted = torch.cdist(val_x, means).argmin(1).numpy()
    assert (predicted == a.val.targets).mean() > 0.9


def test_resize_batch_to_any_resolution() -> None:
    x = torch.randn(4, 3, 32, 32)
    assert resize_batch(x, 32) is x
    assert resize_batch(x, 24).shape == (4, 3, 24, 24)
    assert resize_batch(x, 40).shape == (4, 3, 40, 40)
    with pytest.raises(ValueError, match="resolution"):
        resize_batch(x, 0)


def test_augmentation_crops_and_flips_train_only(data_root: Path) -> None:
    _write_cifar10(data_root / "c10")
    splits = load_dataset(DatasetSpec(kind="cifar10", root="c10"), data_root=data_root)
    torch.manual_seed(0)
    views = {tuple(splits.train[0][0].flatten()[:64].tolist()) for _ in range(8)}
    assert len(views) > 1  # random crop/flip changes the image between epochs
    assert torch.equal(splits.val[0][0], splits.val[0][0])


# --- IDX (the MNIST file format) and Fashion-MNIST ---------------------------------------------

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_NAMES = [
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
]


def _idx_bytes(magic: int, dims: tuple[int, ...], data: np.ndarray) -> bytes:
    """An IDX file: big-endian magic number and dimensions, then the unsigned bytes."""
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    return header + np.ascontiguousarray(data, dtype=np.uint8).tobytes()


def _write_idx_file(path: Path, content: bytes, *, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def _write_idx(
    root: Path, *, gz: bool = False, sizes: tuple[int, int] = (100, 10), side: int = 28
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Four small IDX files under ``root``; each split's (images (N, side, side), labels)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    written = {}
    for (split, (image_name, label_name)), count in zip(IDX_NAMES.items(), sizes, strict=True):
        images = rng.integers(0, 256, (count, side, side), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)  # every class in every split
        rng.shuffle(labels)
        _write_idx_file(root / image_name, _idx_bytes(0x803, images.shape, images), gz=gz)
        _write_idx_file(root / label_name, _idx_bytes(0x801, labels.shape, labels), gz=gz)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_reads_raw_and_gzipped_files(data_root: Path, gz: bool) -> None:
    written = _write_idx(data_root / "mnist", gz=gz)
    spec = DatasetSpec(kind="idx", root="mnist", channels=1, resolution=28)
    splits = load_dataset(spec, data_root=data_root)
    # train from train-*, val from t10k-*, holdout 10% of train (one image of each class)
    assert (len(splits.train), len(splits.val), len(splits.holdout)) == (90, 10, 10)
    assert splits.class_names == [str(i) for i in range(10)]
    assert splits.train.augmentation == "pad_crop" and not splits.val.augment
    for split, source in (("train", splits.train.source), ("val", splits.val.source)):
        images, labels = written[split]
        assert source.images.dtype == torch.uint8 and source.images.shape == (
            len(labels),
            1,
            28,
            28,
        )
        assert np.array_equal(source.images[:, 0].numpy(), images)  # the file's pixels, unresized
        assert np.array_equal(source.targets, labels) and source.targets.dtype == np.int64
    image, label = splits.val[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= label < 10


def test_idx_resized_and_in_three_channels_stays_uint8(data_root: Path) -> None:
    _write_idx(data_root / "mnist", gz=True)
    splits = load_dataset(DatasetSpec(kind="idx", root="mnist"), data_root=data_root)
    source = splits.train.source
    assert source.images.dtype == torch.uint8 and source.images.shape == (100, 3, 32, 32)
    assert torch.equal(source.images[:, 0], source.images[:, 2])  # grey in every channel
    assert splits.train[0][0].shape == (3, 32, 32)


def _break_magic(root: Path) -> None:
    images = np.zeros((100, 28, 28), np.uint8)
    (root / "train-images-idx3-ubyte").write_bytes(_idx_bytes(0x801, images.shape, images))


def _truncate(root: Path) -> None:
    content = (root / "train-images-idx3-ubyte").read_bytes()
    (root / "train-images-idx3-ubyte").write_bytes(content[: 16 + 70_000])


def _truncate_gzip_stream(root: Path) -> None:
    (root / "train-images-idx3-ubyte").unlink()
    content = _idx_bytes(0x803, (30, 28, 28), np.ones((30, 28, 28), np.uint8))
    squeezed = gzip.compress(content)
    (root / "train-images-idx3-ubyte.gz").write_bytes(squeezed[: len(squeezed) // 2])


def _drop_a_label(root: Path) -> None:
    labels = np.zeros(99, np.uint8)
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(0x801, labels.shape, labels))


def _label_out_of_range(root: Path) -> None:
    labels = np.zeros(10, np.uint8)
    labels[[4, 7]] = (10, 255)
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(0x801, labels.shape, labels))


def _gzipped_under_a_raw_name(root: Path) -> None:
    path = root / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            _break_magic,
            "train-images-idx3-ubyte: not an IDX image file: found 0x00000801 where its magic "
            "number 0x00000803 (unsigned bytes, 3 dimensions) belongs",
        ),
        (
            _truncate,
            "train-images-idx3-ubyte: truncated: its header says 100 images of 28x28 (78,400 "
            "bytes of pixels), the file holds 70,000 after the header",
        ),
        (_truncate_gzip_stream, "train-images-idx3-ubyte.gz: truncated: Compressed file ended"),
        (
            _drop_a_label,
            "train-images-idx3-ubyte holds 100 images but train-labels-idx1-ubyte holds 99 "
            "labels; they must match one to one",
        ),
        (
            _label_out_of_range,
            "t10k-labels-idx1-ubyte: label 10 at index 4 (2 out of range in all); idx labels lie "
            "in 0..9",
        ),
        (
            _gzipped_under_a_raw_name,
            "t10k-images-idx3-ubyte: not an IDX image file: found 0x1f8b0800 where its magic "
            "number 0x00000803 (unsigned bytes, 3 dimensions) belongs; the file is gzipped: "
            "name it t10k-images-idx3-ubyte.gz",
        ),
    ],
    ids=["wrong-magic", "truncated", "truncated-gzip", "count-mismatch", "label-range", "gz-raw"],
)
def test_broken_idx_files_are_refused_saying_which_and_why(
    data_root: Path, damage: Callable[[Path], None], message: str
) -> None:
    _write_idx(data_root / "mnist")
    damage(data_root / "mnist")
    with pytest.raises(IdxFormatError) as info:
        load_dataset(DatasetSpec(kind="idx", root="mnist"), data_root=data_root)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # reported like UnsafePickleError, never a crash


def test_idx_layout_is_checked_by_file_names(data_root: Path) -> None:
    spec = DatasetSpec(kind="idx", root="mnist")
    _write_idx(data_root / "mnist", gz=True)
    (data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").rename(
        data_root / "mnist" / "t10k-labels-idx1-ubyte"  # raw and gzipped may be mixed
    )
    assert check_dataset_files(spec, data_root) == (data_root / "mnist").resolve()
    (data_root / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataPathError) as info:
        check_dataset_files(spec, data_root, field="dataset.root")
    assert str(info.value) == (
        "dataset.root: 'mnist' is not an IDX (MNIST-format) directory; missing "
        "['t10k-labels-idx1-ubyte'] (each raw or gzipped, <name>.gz)"
    )
    _write_cifar10(data_root / "c10")
    with pytest.raises(DataPathError, match=r"not an IDX .* missing \['train-images-idx3-ubyte'"):
        check_dataset_files(DatasetSpec(kind="idx", root="c10"), data_root)


def test_idx_paths_outside_the_data_root_are_refused(data_root: Path, tmp_path: Path) -> None:
    _write_idx(tmp_path / "elsewhere")
    for root in ("../elsewhere", str(tmp_path / "elsewhere")):
        with pytest.raises(DataPathError, match="outside the data root"):
            load_dataset(DatasetSpec(kind="idx", root=root), data_root=data_root)
    (data_root / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(DataPathError, match="outside the data root"):
        load_dataset(DatasetSpec(kind="fashion_mnist", root="link"), data_root=data_root)
    # A file of the set that is a symlink leading out is refused too.
    _write_idx(data_root / "mnist")
    (data_root / "mnist" / "train-images-idx3-ubyte").unlink()
    (data_root / "mnist" / "train-images-idx3-ubyte").symlink_to(
        tmp_path / "elsewhere" / "train-images-idx3-ubyte"
    )
    with pytest.raises(DataPathError, match="outside the data root"):
        load_dataset(DatasetSpec(kind="idx", root="mnist"), data_root=data_root)
    # One leading to a file of another name inside the root is read, gzipped by its own name.
    blob = data_root / "blobs" / "0a1b2c"
    blob.parent.mkdir()
    blob.write_bytes(
        gzip.compress((tmp_path / "elsewhere" / "train-images-idx3-ubyte").read_bytes())
    )
    (data_root / "mnist" / "train-images-idx3-ubyte").unlink()
    (data_root / "mnist" / "train-images-idx3-ubyte.gz").symlink_to(blob)
    splits = load_dataset(DatasetSpec(kind="idx", root="mnist"), data_root=data_root)
    assert len(splits.train) + len(splits.holdout) == 100


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small Fashion-MNIST "package" folder outside the data root, standing in for
    /usr/share/datasets/fashion-mnist (so these tests need no package)."""
    from nas.data import paths

    folder = tmp_path / "share" / "fashion-mnist"
    _write_idx(folder, gz=True, sizes=(40, 20))
    monkeypatch.setattr(paths, "FASHION_MNIST_PACKAGE", folder)
    return folder


def test_fashion_mnist_without_root_reads_the_package(data_root: Path, fake_package: Path) -> None:
    splits = load_dataset(DatasetSpec(kind="fashion_mnist", channels=1))  # no data root needed
    assert splits.class_names == FASHION_NAMES
    assert (len(splits.train) + len(splits.holdout), len(splits.val)) == (40, 20)
    assert splits.train.augmentation == "pad_crop"
    assert input_normalization(splits.spec) == ((pytest.approx(0.2860),), (pytest.approx(0.3530),))
    # The same files under the data root, named by a root, read the same.
    _write_idx(data_root / "fm", sizes=(40, 20))
    own = load_dataset(DatasetSpec(kind="fashion_mnist", root="fm"), data_root=data_root)
    assert own.class_names == FASHION_NAMES and own.spec.channels == 3
    with pytest.raises(ValueError, match="data_root: required"):
        load_dataset(DatasetSpec(kind="fashion_mnist", root="fm"))


def test_only_the_package_folder_is_readable_outside_the_data_root(
    data_root: Path, fake_package: Path, tmp_path: Path
) -> None:
    """The package's folder (resolved) may be named as a root, directly or by a symlink inside
    the data root; its parent, a sibling, or a symlink leading anywhere else may not."""
    (data_root / "to-package").symlink_to(fake_package, target_is_directory=True)
    (data_root / "to-share").symlink_to(fake_package.parent, target_is_directory=True)
    _write_idx(tmp_path / "share" / "other")
    for root in (str(fake_package), "to-package", "to-share/fashion-mnist"):
        spec = DatasetSpec(kind="fashion_mnist", root=root)
        assert check_dataset_files(spec, data_root) == fake_package.resolve()
        assert len(load_dataset(spec, data_root=data_root).val) == 20
    for root in (
        str(fake_package.parent),
        "to-share",
        "to-share/other",
        str(tmp_path / "share/other"),
    ):
        with pytest.raises(DataPathError, match="outside the data root"):
            check_dataset_files(DatasetSpec(kind="idx", root=root), data_root)


def test_a_missing_package_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nas.data import paths

    monkeypatch.setattr(paths, "FASHION_MNIST_PACKAGE", tmp_path / "not-installed")
    with pytest.raises(DataPathError) as info:
        check_dataset_files(DatasetSpec(kind="fashion_mnist"), None, field="dataset.root")
    message = str(info.value)
    assert message.startswith("dataset.kind: 'fashion_mnist' without a root reads the Debian ")
    assert "apt-get install dataset-fashion-mnist" in message and "not-installed" in message
    with pytest.raises(DataPathError, match="apt-get install dataset-fashion-mnist"):
        load_dataset(DatasetSpec(kind="fashion_mnist"))


def test_submission_checks_idx_folders_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_package: Path
) -> None:
    """POST /api/v1/jobs: a 422 naming the field for a wrong IDX folder or a missing package;
    a job on the (installed) package is accepted."""
    from fastapi.testclient import TestClient
    from test_api_jobs import AUTH, SPEC, _settings

    from nas.data import paths
    from service.app import create_app
    from service.migrate import upgrade_database

    url = f"sqlite:///{tmp_path / 'var' / 'nas.db'}"
    upgrade_database(url)
    (tmp_path / "data" / "empty").mkdir(parents=True)
    with TestClient(create_app(_settings(url, tmp_path)), raise_server_exceptions=False) as client:

        def submit(dataset: dict[str, Any]) -> Any:
            return client.post("/api/v1/jobs", json={**SPEC, "dataset": dataset}, headers=AUTH)

        accepted = submit({"kind": "fashion_mnist", "channels": 1})
        assert accepted.status_code == 201, accepted.text
        refused = submit({"kind": "idx", "root": "empty"})
        assert refused.status_code == 422
        (error,) = refused.json()["detail"]
        assert error["field"] == "dataset.root" and "not an IDX" in error["msg"]
        monkeypatch.setattr(paths, "FASHION_MNIST_PACKAGE", tmp_path / "not-installed")
        missing = submit({"kind": "fashion_mnist"})
        assert missing.status_code == 422
        (error,) = missing.json()["detail"]
        assert error["field"] == "dataset.kind"
        assert "apt-get install dataset-fashion-mnist" in error["msg"]


def test_idx_kind_fields_and_their_json_schema() -> None:
    import jsonschema

    with pytest.raises(ValidationError, match="root: required for kind 'idx'"):
        DatasetSpec(kind="idx")
    with pytest.raises(ValidationError, match="root: empty"):
        DatasetSpec(kind="fashion_mnist", root="")
    with pytest.raises(ValidationError, match="num_samples/num_classes"):
        DatasetSpec(kind="fashion_mnist", num_classes=10)
    assert DatasetSpec(kind="fashion_mnist").root is None
    assert DatasetSpec(kind="idx", root="m", augment=True).augmentation == "pad_crop"
    schema = DatasetSpec.model_json_schema()
    branches = schema.pop("oneOf")
    for body, valid in [
        ({"kind": "fashion_mnist"}, True),
        ({"kind": "fashion_mnist", "root": "fm"}, True),
        ({"kind": "idx", "root": "m"}, True),
        ({"kind": "idx"}, False),
        ({"kind": "fashion_mnist", "root": ""}, False),
        ({"kind": "fashion_mnist", "num_samples": 100}, False),
    ]:
        matching = sum(jsonschema.Draft202012Validator(b).is_valid(body) for b in branches)
        assert (matching == 1) is valid, body


def test_fashion_mnist_from_the_debian_package(fashion_mnist_root: Path) -> None:
    """The installed package, read whole: 60,000 train and 10,000 t10k images, balanced, and
    the normalisation written in datasets.py is the train set's (4 decimals)."""
    spec = DatasetSpec(kind="fashion_mnist", channels=1, resolution=28)
    splits = load_dataset(spec)
    assert (len(splits.train), len(splits.holdout), len(splits.val)) == (54_000, 6_000, 10_000)
    assert splits.class_names == FASHION_NAMES
    train = splits.train.source
    assert train.images.dtype == torch.uint8 and train.images.shape == (60_000, 1, 28, 28)
    assert np.array_equal(np.bincount(train.targets), [6_000] * 10)
    pixels = train.images.double() / 255
    (mean,), (std,) = input_normalization(spec)
    assert round(pixels.mean().item(), 4) == mean and round(pixels.std().item(), 4) == std


def test_fashion_mnist_example_is_a_valid_submission() -> None:
    """examples/fashion-mnist-ofa.yaml (tests/test_examples.py covers the digits ones)."""
    import yaml

    import search_spaces
    from nas.hardware import BUILTIN_NAMES
    from nas.training.schedules import build_phases
    from service.api.schemas.jobs import JobCreate

    path = Path(__file__).resolve().parents[1] / "examples" / "fashion-mnist-ofa.yaml"
    job = JobCreate.model_validate(yaml.safe_load(path.read_text()))
    assert job.space == "ofa_mbv3" and job.preset == "tiny"
    assert (job.dataset.kind, job.dataset.root, job.dataset.channels) == ("fashion_mnist", None, 1)
    space = search_spaces.get(job.space, preset="tiny")
    assert job.dataset.resolution in space.resolutions
    assert set(job.devices) == set(BUILTIN_NAMES)
    assert all(job.search.budgets[name].latency_ms is not None for name in BUILTIN_NAMES)
    assert build_phases(job.training, job.training.schedule or space.default_training[0])
