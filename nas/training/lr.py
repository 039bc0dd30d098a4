"""Per-step learning rate: linear warmup, then cosine decay, restarted at every phase."""

from __future__ import annotations

import math


def warmup_cosine_lr(
    step: int, *, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0
) -> float:
    """LR of ``step`` (0-based) in a phase of ``total_steps``; a pure function of the step, so
    the schedule needs no state of its own and resumes exactly."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    if step < warmup_steps:
        return peak * (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
