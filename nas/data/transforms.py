"""Image transforms on torch ops: augmentation per image on uint8, normalisation per batch.

Augmentation runs where the image is read (a ``DataLoader`` worker) on uint8 CHW tensors, and
draws only from the ``torch.Generator`` it is handed, so an image's augmentation is a function
of (seed, epoch, position) whatever the number of workers, and a resumed run sees the same
pixels. Normalisation to float happens per batch on the device the batch lands on, so what
crosses process boundaries and the host-to-device copy is a quarter of float32's size.

``resize_batch`` is elastic resolution: a supernet trains and evaluates each batch at the
resolution of the subnet it runs, so the resize happens per batch, not per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F

Augmentation = Literal["none", "pad_crop", "pad_crop_flip", "resized_crop_flip"]
"""Train-time augmentation policies: ``pad_crop`` for grayscale glyphs (a flipped digit is
another digit), ``pad_crop_flip`` the CIFAR recipe, ``resized_crop_flip`` the ImageNet one
(random-resized-crop + flip) for photos."""

AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)

ImageTransform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
"""(uint8 CHW image, generator or None) -> uint8 CHW image at the output resolution."""

#: Eval crops keep this share of the resized image's side (the usual 224 / 256).
EVAL_CROP_FRACTION = 0.875


def resize_batch(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize an (N, C, H, W) float batch to ``resolution`` x ``resolution`` (bilinear;
    antialiased when shrinking so small subnets see the image, not aliasing)."""
    if resolution < 1:
        raise ValueError(f"resolution: must be a positive number of pixels, got {resolution}")
    if x.shape[-2] == resolution and x.shape[-1] == resolution:
        return x
    shrinking = resolution < max(x.shape[-2], x.shape[-1])
    return F.interpolate(
        x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrinking
    )


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A uint8 CHW image resized to ``height`` x ``width`` (bilinear, antialiased when
    shrinking), rounded back to uint8."""
    if image.shape[-2] == height and image.shape[-1] == width:
        return image
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    out = F.interpolate(
        image[None].float(),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
        antialias=shrinking,
    )[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator | None, high: int) -> int:
    """An int in ``[0, high]``."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def _flip(image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return image.flip(-1) if float(torch.rand((), generator=generator)) < 0.5 else image


def pad_crop(
    image: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back to the input size at random, optionally flip half the
    time (the CIFAR recipe; without the flip, the one for glyphs)."""
    _, height, width = image.shape
    if padding > 0:
        image = F.pad(image, (padding, padding, padding, padding))
        top, left = _randint(generator, 2 * padding), _randint(generator, 2 * padding)
        image = image[:, top : top + height, left : left + width]
    return _flip(image, generator) if flip else image


def random_resized_crop(
    image: torch.Tensor,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inception-style crop: a random area share in ``scale`` and aspect ratio in ``ratio``
    (log-uniform), resized to ``size`` x ``size``; a centre crop of the whole image when ten
    tries find no fitting box. Flipped half the time unless ``flip`` is off."""
    _, height, width = image.shape
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, log_low, log_high))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            box = (_randint(generator, height - h), _randint(generator, width - w), h, w)
            break
    if box is None:  # fall back to the largest central crop within the ratio range
        aspect = width / height
        if aspect < ratio[0]:
            w, h = width, round(width / ratio[0])
        elif aspect > ratio[1]:
            w, h = round(height * ratio[1]), height
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    top, left, h, w = box
    out = resize_image(image[:, top : top + h, left : left + w], size, size)
    return _flip(out, generator) if flip else out


def resize_centre_crop(
    image: torch.Tensor, size: int, *, crop_fraction: float = EVAL_CROP_FRACTION
) -> torch.Tensor:
    """The eval transform for photos: resize the shorter side to ``size / crop_fraction``, then
    cut the central ``size`` x ``size``."""
    _, height, width = image.shape
    shorter = max(size, round(size / crop_fraction))
    scale = shorter / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    image = resize_image(image, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top : top + size, left : left + size]


def fit_to_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """An in-memory image (already at the base resolution) unchanged; any other shape
    resized, so every item of a batch has the same shape."""
    return resize_image(image, size, size)


def train_transform(policy: Augmentation, *, resolution: int, photos: bool) -> ImageTransform:
    """The per-image train transform of ``policy`` at ``resolution``. ``photos``: the source
    holds whole decoded photos of any size (resize + centre crop them when not augmenting)."""
    padding = max(1, resolution // 8)
    base = eval_transform(resolution=resolution, photos=photos)  # built once, not per image

    def padded(flip: bool) -> ImageTransform:
        def transform(image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
            return pad_crop(base(image, None), padding=padding, flip=flip, generator=generator)

        return transform

    def resized(image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return random_resized_crop(image, resolution, generator=generator)

    table: dict[str, ImageTransform] = {
        "none": base,
        "pad_crop": padded(flip=False),
        "pad_crop_flip": padded(flip=True),
        "resized_crop_flip": resized,
    }
    if policy not in table:
        raise ValueError(f"augment: {policy!r} is not a policy; allowed values: {AUGMENTATIONS}")
    return table[policy]


def eval_transform(*, resolution: int, photos: bool) -> ImageTransform:
    """Deterministic: photos are resized and centre-cropped, in-memory images kept as read."""

    def transform(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        del generator
        if photos:
            return resize_centre_crop(image, resolution)
        return fit_to_size(image, resolution)

    return transform


class Normalizer:
    """uint8 batches -> float ``(x / 255 - mean) / std``, on whatever device the batch is on
    (the per-channel constants are copied there once)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean/std: {len(mean)} vs {len(std)} channels")
        self.mean, self.std = tuple(mean), tuple(std)
        std_t = torch.tensor(std, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self._shift = (torch.tensor(mean, dtype=torch.float32) / std_t).view(1, -1, 1, 1)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 (or (C, H, W)) -> float32 on the same device."""
        single = images.ndim == 3
        x = images[None] if single else images
        channels = x.shape[1]
        consts = self._on.get(x.device)
        if consts is None:
            consts = (self._scale.to(x.device), self._shift.to(x.device))
            self._on[x.device] = consts
        scale, shift = consts
        out = x.float().mul_(scale[:, :channels]).sub_(shift[:, :channels])
        return out[0] if single else out
