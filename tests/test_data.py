"""The data layer: digits, CIFAR and ImageFolder readers, deterministic splits, path safety."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from nas.data import (
    DataPathError,
    DatasetSpec,
    UnsafePickleError,
    load_dataset,
    resize_batch,
    resolve_inside,
)

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
