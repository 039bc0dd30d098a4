"""The input pipeline: uint8 transforms, seeded sharded order, worker-count independence,
resumption, streaming evaluation, and where evaluation runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import DatasetSpec, load_dataset, random_resized_crop, resize_centre_crop
from nas.data.loading import (
    EpochSampler,
    EvalBatches,
    FixedBatches,
    TrainBatches,
    default_num_workers,
    epoch_order,
)
from workers.accuracy import DEFAULT_EVALUATOR_GPUS, evaluator_gpus


def _photos(root: Path, sizes: list[tuple[int, int]], classes: int = 2) -> None:
    """Photo-like JPEGs and PNGs of several sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            suffix = ".jpg" if i % 2 else ".png"
            Image.fromarray(pixels).save(folder / f"{i}{suffix}")


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_imagefolder_items_have_the_asked_shape_and_range(data_root: Path, resolution: int) -> None:
    _photos(data_root / "photos", [(300, 200), (64, 96), (40, 40), (500, 120)])
    splits = load_dataset(
        DatasetSpec(kind="imagefolder", root="photos", resolution=resolution, val_fraction=0.25),
        data_root=data_root,
    )
    assert splits.train.augmentation == "resized_crop_flip"
    assert splits.val.augmentation == "none" and splits.holdout.augmentation == "none"
    mean, std = splits.train.normalizer.mean, splits.train.normalizer.std
    low = min((0 - m) / s for m, s in zip(mean, std, strict=True))
    high = max((1 - m) / s for m, s in zip(mean, std, strict=True))
    for split in (splits.train, splits.val):
        for i in range(len(split)):
            raw, label = split.raw[(i, 1234 + i)]
            assert raw.dtype == torch.uint8 and raw.shape == (3, resolution, resolution)
            x, same_label = split[i]
            assert x.dtype == torch.float32 and x.shape == (3, resolution, resolution)
            assert low - 1e-5 <= float(x.min()) and float(x.max()) <= high + 1e-5
            assert label == same_label
    images, labels = next(iter(EvalBatches(splits.val, batch_size=8)))
    assert images.shape == (len(splits.val), 3, resolution, resolution)
    assert labels.dtype == torch.int64


def test_random_resized_crop_is_a_function_of_its_generator() -> None:
    image = torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8)

    def crop(seed: int) -> torch.Tensor:
        return random_resized_crop(image, 32, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(crop(5), crop(5))
    assert not all(torch.equal(crop(5), crop(s)) for s in range(6, 12))
    assert crop(5).shape == (3, 32, 32) and crop(5).dtype == torch.uint8


def test_resize_centre_crop_keeps_the_centre() -> None:
    image = torch.zeros((1, 100, 200), dtype=torch.uint8)
    image[:, 30:70, 80:120] = 255  # a bright square in the middle
    out = resize_centre_crop(image, 32)
    assert out.shape == (1, 32, 32)
    assert out[:, 12:20, 12:20].min() == 255 and out[:, 0, 0].max() == 0


def test_two_ranks_see_disjoint_complete_shards() -> None:
    splits = load_dataset(DatasetSpec(kind="synthetic", num_samples=103, num_classes=2))
    train = splits.train
    batch = 10
    for epoch in (0, 3):
        shards = []
        for rank in (0, 1):
            sampler = EpochSampler(train, batch_size=batch, seed=4, rank=rank, world_size=2)
            sampler.set_epoch(epoch)
            shards.append([position for position, _ in sampler])
        full_batches = len(train) // batch * batch
        order = epoch_order(len(train), seed=4, epoch=epoch)[:full_batches].tolist()
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == sorted(order)
        assert len(shards[0]) == len(shards[1]) == full_batches // 2
        # each global batch is the two ranks' halves side by side
        assert shards[0][:5] + shards[1][:5] == order[:10]
    with pytest.raises(ValueError, match="does not split evenly"):
        EpochSampler(train, batch_size=9, seed=0, rank=0, world_size=2)


def test_batches_depend_on_seed_epoch_and_position_only() -> None:
    """0 or 2 worker processes, from the start or resumed at batch 3: the same pixels."""
    spec = DatasetSpec(kind="digits", augment="pad_crop_flip")
    splits = load_dataset(spec)

    def epoch(workers: int, start: int, epoch: int = 1) -> list[torch.Tensor]:
        loader = TrainBatches(splits.train, batch_size=64, seed=3, num_workers=workers)
        return [x for x, _ in loader.epoch(epoch, start=start)]

    inline, parallel, resumed = epoch(0, 0), epoch(2, 0), epoch(0, 3)
    assert len(inline) == len(splits.train) // 64
    for a, b in zip(inline, parallel, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(inline[3:], resumed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(inline[0], epoch(0, 0, epoch=2)[0])  # a new epoch, a new order


def test_evaluation_streams_every_image_once_in_order() -> None:
    splits = load_dataset(DatasetSpec(kind="digits"))
    batches = EvalBatches(splits.val, batch_size=100)
    labels = torch.cat([y for _, y in batches])
    assert len(batches) == 4 and labels.tolist() == splits.val.targets.tolist()
    first = next(iter(batches))[0]
    torch.testing.assert_close(first[7], splits.val[7][0], rtol=0, atol=1e-6)
    # nothing of the split is kept between passes
    kept = [v for v in vars(batches).values() if isinstance(v, torch.Tensor)]
    assert not kept


def test_calibration_batches_are_fixed_and_bounded() -> None:
    splits = load_dataset(DatasetSpec(kind="digits", augment="pad_crop_flip"))
    fixed = FixedBatches(splits.train, batch_size=32, num_batches=3, seed=0)
    first, second = list(fixed), list(fixed)
    assert len(first) == 3
    for (a, _), (b, _) in zip(first, second, strict=True):
        assert torch.equal(a, b)
    stored = [images for images, _ in fixed._batches]
    assert all(x.dtype == torch.uint8 for x in stored)
    assert sum(x.shape[0] for x in stored) == 96 < len(splits.train)


def test_default_worker_count_follows_the_source_and_the_cpus(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digits = load_dataset(DatasetSpec(kind="digits"))
    assert default_num_workers(digits.train) == 0
    assert default_num_workers(digits.train, 3) == 3
    _photos(data_root / "photos", [(40, 40)] * 4)
    photos = load_dataset(DatasetSpec(kind="imagefolder", root="photos"), data_root=data_root)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert default_num_workers(photos.train) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_num_workers(photos.train) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert default_num_workers(photos.train) == 8


def test_evaluators_take_a_gpu_share_only_where_there_is_a_gpu() -> None:
    assert evaluator_gpus(None, 0) == 0
    assert evaluator_gpus(None, 2) == DEFAULT_EVALUATOR_GPUS
    assert evaluator_gpus(0.0, 2) == 0
    assert evaluator_gpus(0.5, 1) == 0.5
    with pytest.raises(ValueError, match=r"placement\.evaluator_gpus: 0\.5 .* no GPU"):
        evaluator_gpus(0.5, 0)


def test_max_train_images_cuts_train_only_stratified_and_seeded() -> None:
    full = load_dataset(DatasetSpec(kind="digits"))
    cut = load_dataset(DatasetSpec(kind="digits", max_train_images=300))
    again = load_dataset(DatasetSpec(kind="digits", max_train_images=300))
    assert 290 <= len(cut.train) <= 300
    assert set(cut.train.indices.tolist()) <= set(full.train.indices.tolist())
    assert np.array_equal(cut.train.indices, again.train.indices)
    assert np.array_equal(cut.val.indices, full.val.indices)
    assert np.array_equal(cut.holdout.indices, full.holdout.indices)
    counts = np.bincount(cut.train.targets, minlength=10)
    assert counts.min() >= 0.9 * counts.max()  # every class keeps its share


def test_a_split_that_is_not_one_says_what_to_use_instead() -> None:
    from torch.utils.data import Subset

    splits = load_dataset(DatasetSpec(kind="digits"))
    with pytest.raises(TypeError, match="max_train_images"):
        TrainBatches(Subset(splits.train, range(100)), batch_size=32, seed=0)  # type: ignore[arg-type]
