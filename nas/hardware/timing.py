"""Timing one callable: warm-up, repeats until the median is known well enough, robust summary.

Latencies on real devices are skewed (interrupts, frequency changes, other processes), so the
summary is the median with the interquartile range, and we stop once the 95% confidence
interval of the median (distribution-free, from order statistics) is tight or the time budget
is spent. The minimum is kept too: noise only ever adds time, so on a shared machine the
minimum is the steadiest estimate of what the work itself costs (Chen and Revels, "Robust
benchmarking in noisy environments", arXiv:1608.04295). Torch-free: the runtimes hand in a
closure that runs one forward pass and waits for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Clock = Literal["auto", "wall", "thread"]


class TimingPolicy(BaseModel):
    """How hard to try for one figure; the defaults suit a block or a small network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warmup: int = Field(default=10, ge=0, le=10_000, description="Untimed runs first.")
    min_repeats: int = Field(default=15, ge=5, le=100_000)
    max_repeats: int = Field(default=300, ge=5, le=1_000_000)
    budget_s: float = Field(
        default=2.0, gt=0.0, le=3600.0, description="Seconds of timed runs at most."
    )
    rel_ci: float = Field(
        default=0.02,
        gt=0.0,
        le=1.0,
        description="Stop when the median's 95% interval is within this share of the median.",
    )
    clock: Clock = Field(
        default="auto",
        description="'thread': CPU time of the measuring thread; 'auto': thread for "
        "single-threaded CPU devices, else wall.",
    )
    min_sample_s: float = Field(
        default=2e-4,
        ge=0.0,
        le=1.0,
        description="Runs shorter than this are timed in groups (timer resolution, jitter).",
    )


class Measurement(BaseModel):
    """Median and spread of one latency, in milliseconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    median_ms: float = Field(ge=0.0)
    iqr_ms: float = Field(ge=0.0)
    min_ms: float = Field(ge=0.0)
    ci_low_ms: float = Field(ge=0.0)
    ci_high_ms: float = Field(ge=0.0)
    repeats: int = Field(ge=1, description="Timed samples (each possibly a group of runs).")
    runs_per_sample: int = Field(default=1, ge=1)

    def value(self, statistic: str) -> float:
        """The figure a table adds up: ``median`` or ``min``."""
        return self.median_ms if statistic == "median" else self.min_ms

    def scaled(self, factor: float) -> Measurement:
        """Every figure times ``factor`` (a drift correction)."""
        return self.model_copy(
            update={
                name: getattr(self, name) * factor
                for name in ("median_ms", "iqr_ms", "min_ms", "ci_low_ms", "ci_high_ms")
            }
        )


def median_interval(sorted_samples: np.ndarray) -> tuple[float, float]:
    """95% confidence interval of the median from order statistics (binomial, normal approx)."""
    n = len(sorted_samples)
    half = 0.98 * math.sqrt(n)  # 1.96 / 2 * sqrt(n)
    low = max(0, math.floor(n / 2 - half) - 1)
    high = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_samples[low]), float(sorted_samples[high])


def summarise(samples_s: list[float], runs_per_sample: int = 1) -> Measurement:
    ordered = np.sort(np.asarray(samples_s, dtype=np.float64)) * 1e3
    q1, median, q3 = np.percentile(ordered, [25, 50, 75])
    low, high = median_interval(ordered)
    return Measurement(
        median_ms=float(median),
        iqr_ms=float(q3 - q1),
        min_ms=float(ordered[0]),
        ci_low_ms=low,
        ci_high_ms=high,
        repeats=len(ordered),
        runs_per_sample=runs_per_sample,
    )


def measure(
    run: Callable[[], object], policy: TimingPolicy | None = None, *, single_thread: bool = False
) -> Measurement:
    """Time ``run`` (one forward pass, synchronised) under ``policy``; see ``measure_many``."""
    return measure_many([run], policy, single_thread=single_thread)[0]


def measure_many(
    runs: Sequence[Callable[[], object]],
    policy: TimingPolicy | None = None,
    *,
    single_thread: bool = False,
) -> list[Measurement]:
    """Time several runners in interleaved rounds, each round one sample of each.

    Interleaving spreads every runner's samples over the whole measurement, so a burst of
    load from other processes slows all of them a little instead of one of them a lot. Each
    sample is preceded by one untimed run, so it is taken warm, as a repeated forward pass is.

    ``single_thread``: the work runs on the calling thread only (one-thread CPU inference), so
    the ``auto`` clock may use that thread's CPU time: equal to wall time on an idle machine,
    and not inflated when other processes take the CPU away. The budget (``budget_s`` per
    runner) counts the same clock, so a starved measurement still gets its samples.
    """
    policy = policy or TimingPolicy()
    thread = policy.clock == "thread" or (policy.clock == "auto" and single_thread)
    clock = time.thread_time if thread else time.perf_counter
    groups = []
    for run in runs:
        for _ in range(policy.warmup):
            run()
        start = clock()
        run()
        first = clock() - start
        short = first < policy.min_sample_s
        groups.append(math.ceil(policy.min_sample_s / max(first, 1e-7)) if short else 1)
    samples: list[list[float]] = [[] for _ in runs]
    open_runs = list(range(len(runs)))
    budget = policy.budget_s * len(runs)
    spent = 0.0
    for round_number in range(1, policy.max_repeats + 1):
        for i in open_runs:
            run, group = runs[i], groups[i]
            run()
            start = clock()
            for _ in range(group):
                run()
            elapsed = clock() - start
            samples[i].append(elapsed / group)
            spent += elapsed
        if round_number < policy.min_repeats:
            continue
        if spent >= budget:
            break
        if round_number % 5 == 0:
            open_runs = [i for i in open_runs if not _tight(samples[i], policy.rel_ci)]
            if not open_runs:
                break
    return [summarise(found, group) for found, group in zip(samples, groups, strict=True)]


def _tight(samples: list[float], rel_ci: float) -> bool:
    ordered = np.sort(np.asarray(samples))
    low, high = median_interval(ordered)
    median = float(np.median(ordered))
    return median > 0 and (high - low) <= rel_ci * median
