"""Input checks and array <-> plain-type conversion shared by the predictors.

Predictor states are JSON-ready (a job stores them in the database or as a file): arrays
travel as base64 of their little-endian bytes, so a round trip is exact.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def check_features(x: Any, dim: int | None = None) -> np.ndarray:
    """``x`` as a finite float32 ``[N, dim]`` matrix, or a ``ValueError`` naming ``x``."""
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"x: expected a 2-D matrix [num_archs, encoding_dim], got {array.ndim}-D")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"x: expected {dim} columns (the encoding the predictor was fitted on), "
            f"got {array.shape[1]}"
        )
    if not np.isfinite(array).all():
        raise ValueError("x: contains NaN or infinite values")
    return array


def check_training_data(x: Any, y: Any, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(x, y)``: same length, at least ``min_samples`` rows, finite targets."""
    features = check_features(x)
    targets = np.asarray(y, dtype=np.float64).reshape(-1)
    if targets.shape[0] != features.shape[0]:
        raise ValueError(f"y: has {targets.shape[0]} values for {features.shape[0]} rows of x")
    if targets.shape[0] < min_samples:
        raise ValueError(f"x: needs at least {min_samples} rows to fit, got {targets.shape[0]}")
    if not np.isfinite(targets).all():
        raise ValueError("y: contains NaN or infinite values")
    return features, targets


def array_to_state(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def array_from_state(state: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(state["dtype"]).newbyteorder("<")
    raw = base64.b64decode(state["data"].encode("ascii"))
    return np.frombuffer(raw, dtype=dtype).reshape(state["shape"]).astype(dtype.newbyteorder("="))


def split_indices(
    num_items: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, test) index split with at least two items on each side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
    if num_items < 4:
        raise ValueError(f"x: needs at least 4 rows for a held-out split, got {num_items}")
    num_test = min(max(2, round(test_fraction * num_items)), num_items - 2)
    order = rng.permutation(num_items)
    return np.sort(order[num_test:]), np.sort(order[:num_test])
