"""Attentive sampling (AttentiveNAS, Wang et al., arXiv:2011.09011): BestUp and WorstUp.

A sandwich whose random subnets are chosen, not just drawn: for each one a MACs target is
drawn uniformly over the range's buckets, ``candidates`` archs in that bucket are drawn, and
the one with the lowest (``best``: BestUp, improves the Pareto front's upper envelope) or the
highest (``worst``: WorstUp, lifts the weakest subnets) loss on the current minibatch trains.
The trainer supplies the losses through ``scorer`` right before ``plan``; data-parallel workers
average them first, so every worker picks the same subnet.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from nas.training.samplers.sandwich import SandwichSampler


class AttentiveSampler(SandwichSampler):
    """Sandwich whose random subnets are the best (or worst) of k at a drawn MACs target."""

    name = "attentive"
    wants_scores = True

    def __init__(
        self,
        *,
        seed: int,
        num_random: int = 2,
        candidates: int = 3,
        mode: Literal["best", "worst"] = "best",
        buckets: int = 8,
        tries: int = 32,
    ) -> None:
        super().__init__(seed=seed, num_random=num_random)
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be a positive int, got {candidates!r}")
        if mode not in ("best", "worst"):
            raise ValueError(f"mode must be one of ('best', 'worst'), got {mode!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be a positive int, got {buckets!r}")
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < candidates:
            raise ValueError(f"tries must be an int >= candidates ({candidates}), got {tries!r}")
        self.candidates, self.mode, self.buckets, self.tries = candidates, mode, buckets, tries
        self._picked: list[tuple[int, int, float]] = []  # (target bucket, macs, loss spread)

    def random_archs(self, space: Any, count: int) -> list[Any]:
        low = int(space.complexity(space.sample(self.rng, "min")).macs)
        high = int(space.complexity(space.sample(self.rng, "max")).macs)
        return [self._choose(space, low, high) for _ in range(count)]

    def _choose(self, space: Any, low: int, high: int) -> Any:
        target = int(self.rng.integers(self.buckets))
        drawn = [space.sample(self.rng, "random") for _ in range(self.tries)]
        macs, _ = space.complexity_batch(drawn)
        scaled = (macs.astype(np.float64) - low) / max(high - low, 1) * self.buckets
        buckets = np.clip(scaled.astype(np.int64), 0, self.buckets - 1)
        # the target bucket's archs first, then the nearest buckets': bounded, never empty
        order = np.lexsort((np.arange(len(drawn)), np.abs(buckets - target)))
        chosen = order[: self.candidates]
        pool = [drawn[i] for i in chosen]
        spread, pick = 0.0, 0
        if len(pool) > 1 and self.scorer is not None:
            losses = np.asarray(self.scorer(pool), dtype=np.float64)
            pick = int(np.argmin(losses) if self.mode == "best" else np.argmax(losses))
            spread = float(losses.max() - losses.min())
        self._picked.append((target, int(macs[chosen[pick]]), spread))
        return pool[pick]

    def metrics(self) -> dict[str, Any]:
        return {
            "attentive_targets": [t for t, _, _ in self._picked],
            "attentive_macs": [m for _, m, _ in self._picked],
            "attentive_loss_spread": float(np.mean([s for *_, s in self._picked] or [0.0])),
        }

    def reset_metrics(self) -> None:
        self._picked = []
