"""How well predicted latencies match measured ones, and the same for a MACs-based proxy.

Three numbers, because each hides something the others show: the share within +-10% (what a
latency budget cares about), the mean absolute percentage error, and Kendall's tau (whether
the predictor ranks subnets as the device does, which is all a search needs).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict


class Fidelity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int
    within_10pct: float
    mape: float
    kendall_tau: float
    worst_error: float


def fidelity(predicted: np.ndarray, measured: np.ndarray) -> Fidelity:
    """Compare ``predicted`` with ``measured`` (same length, ms, measured > 0)."""
    from scipy.stats import kendalltau  # scipy.stats takes a while to import; only here

    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if predicted.shape != measured.shape or predicted.ndim != 1 or len(measured) < 2:
        raise ValueError("predicted and measured must be 1-d arrays of equal length >= 2")
    if (measured <= 0).any():
        raise ValueError("measured latencies must be positive")
    error = np.abs(predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic
    return Fidelity(
        samples=len(measured),
        within_10pct=float(np.mean(error <= 0.10)),
        mape=float(np.mean(error)),
        kendall_tau=float(tau) if np.isfinite(tau) else 0.0,
        worst_error=float(error.max()),
    )


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = slope * x + intercept``."""
    x = np.asarray(x, dtype=np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, np.asarray(y, dtype=np.float64), rcond=None)
    return float(slope), float(intercept)
