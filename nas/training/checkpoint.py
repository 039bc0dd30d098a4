"""Checkpoint files: plain tensors and Python types only, so ``torch.load(weights_only=True)``
reads them (no pickled classes), written atomically so a crash never leaves half a file."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "latest.pt"


def capture_rng_states() -> dict[str, Any]:
    """Python, NumPy and torch global RNG states as tensors and tuples of ints."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    states: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    numpy = states["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write ``state`` to ``directory/latest.pt`` via a temporary file and an atomic rename."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_NAME
    tmp = target.with_suffix(".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, target)
    except BaseException:  # a full disk: keep the last complete checkpoint, drop the half
        tmp.unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (or ``latest.pt`` in a directory) without unpickling code."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    return torch.load(path, map_location="cpu", weights_only=True)
