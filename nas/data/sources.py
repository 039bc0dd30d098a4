"""Where the images come from: in-memory arrays or image files, behind one small interface.

A source yields uint8 CHW tensors at the base resolution; splitting, normalising and
augmenting happen on top (``datasets.py``), so every kind behaves the same from there on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class ImageSource:
    """Indexed access to ``(uint8 CHW image, label)``; ``targets`` holds every label.

    ``photos``: images come whole and of any size (files), not at the base resolution.
    """

    targets: np.ndarray
    photos = False

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def image(self, index: int) -> torch.Tensor:
        raise NotImplementedError


class ArraySource(ImageSource):
    """Images already decoded into one uint8 tensor (digits, CIFAR, synthetic)."""

    def __init__(self, images: torch.Tensor, targets: np.ndarray) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images: expected a uint8 tensor shaped (N, C, H, W)")
        if images.shape[0] != targets.shape[0]:
            raise ValueError("targets: one label per image is required")
        self.images = images
        self.targets = targets.astype(np.int64, copy=False)

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]


class FileSource(ImageSource):
    """Image files decoded on access (ImageFolder), so a large folder never sits in memory.

    An image comes back whole (the transforms crop it), decoded at a reduced size where the
    format allows (JPEG's DCT scaling, ``Image.draft``) down to about twice ``resolution`` on
    the shorter side: the pixels a crop at that resolution can use, at a fraction of the
    decoding work of a large photo.
    """

    photos = True

    def __init__(
        self, paths: Sequence[Path], targets: np.ndarray, *, resolution: int, channels: int
    ) -> None:
        self.paths = list(paths)
        self.targets = targets.astype(np.int64, copy=False)
        self.resolution = resolution
        self.mode = "RGB" if channels == 3 else "L"

    def image(self, index: int) -> torch.Tensor:
        keep = 2 * self.resolution
        with Image.open(self.paths[index]) as img:
            img.draft(self.mode, (keep, keep))
            img = img.convert(self.mode)
            factor = min(img.size) // keep
            if factor >= 2:
                img = img.reduce(factor)
            array = np.array(img, dtype=np.uint8)  # a writable copy that torch may own
        if array.ndim == 2:
            array = array[None]
        else:
            array = array.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(array))


@dataclass(frozen=True)
class RawDataset:
    """What a kind's reader returns: a train source, a val source when the format has one."""

    train: ImageSource
    val: ImageSource | None
    class_names: list[str]


def to_uint8_images(
    images: np.ndarray | torch.Tensor, *, resolution: int, channels: int
) -> torch.Tensor:
    """(N, C, H, W) uint8 -> the requested side and channel count, resized in one batch."""
    x = torch.as_tensor(images)
    if x.shape[1] != channels:
        if channels == 1:
            x = x.float().mean(dim=1, keepdim=True)
        else:
            x = x.expand(-1, channels, -1, -1)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(
            x.float(), size=(resolution, resolution), mode="bilinear", align_corners=False
        )
    if x.dtype != torch.uint8:
        x = x.round().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()
