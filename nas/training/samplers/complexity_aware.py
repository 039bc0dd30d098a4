"""Complexity-aware sampling (ElasticViT, Tang et al., arXiv:2303.09730).

A sandwich whose random subnets walk over MACs buckets: consecutive random subnets differ by
at most ``max_step`` of the MACs range (big jumps in subnet size make the shared weights'
gradients conflict), while the walk bounces between the smallest and largest bucket so that
an epoch still covers the whole range. Candidates come from the space's own operators
(samples, and mutations and crossovers of the previous subnet); the first one in the target
bucket within the bound is taken, after a bounded number of tries the closest one within the
bound, else the previous subnet again: the bound is never exceeded and a step never hangs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.training.samplers.sandwich import SandwichSampler


class ComplexityAwareSampler(SandwichSampler):
    """Sandwich whose random subnets follow a bounded walk over MACs buckets."""

    name = "complexity_aware"

    def __init__(
        self,
        *,
        seed: int,
        num_random: int = 2,
        buckets: int = 8,
        max_step: float = 0.25,
        tries: int = 64,
    ) -> None:
        super().__init__(seed=seed, num_random=num_random)
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 2:
            raise ValueError(f"buckets must be an int >= 2, got {buckets!r}")
        if not 2.0 / buckets <= max_step <= 1.0:
            raise ValueError(f"max_step must be in [2 / buckets, 1], got {max_step!r}")
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise ValueError(f"tries must be a positive int, got {tries!r}")
        self.buckets, self.max_step, self.tries = buckets, max_step, tries
        self._range: tuple[int, int] | None = None
        self._bucket = -1
        self._direction = 1
        self._prev: dict[str, Any] | None = None  # arch as JSON-ready dict (checkpointable)
        self._prev_macs = 0
        self._walk: list[tuple[int, int]] = []  # (bucket, macs) of each accepted subnet

    # --- the walk ----------------------------------------------------------------------------
    def random_archs(self, space: Any, count: int) -> list[Any]:
        low = int(space.complexity(space.sample(self.rng, "min")).macs)
        high = int(space.complexity(space.sample(self.rng, "max")).macs)
        if self._range != (low, high):  # a new phase shrinks differently: restart the walk
            self._range, self._bucket, self._direction, self._prev = (low, high), -1, 1, None
        return [self._next(space) for _ in range(count)]

    def _next(self, space: Any) -> Any:
        assert self._range is not None
        low, high = self._range
        if high <= low:
            return space.sample(self.rng, "random")
        target = self._advance()
        bound = self.max_step * (high - low)
        prev = None if self._prev is None else space.arch_from_dict(self._prev)
        best: tuple[float, Any, int] | None = None
        for start in range(0, self.tries, 16):
            candidates = self._candidates(space, prev, target, min(16, self.tries - start))
            macs, _ = space.complexity_batch(candidates)
            buckets = self.bucket_of(macs)
            ok = np.ones(len(candidates), bool)
            if prev is not None:
                ok = np.abs(macs - self._prev_macs) <= bound
            hits = np.flatnonzero(ok & (buckets == target))
            if hits.size:
                return self._accept(candidates[hits[0]], int(macs[hits[0]]))
            for i in np.flatnonzero(ok):
                miss = abs(int(buckets[i]) - target)
                if best is None or miss < best[0]:
                    best = (miss, candidates[i], int(macs[i]))
        if best is not None:
            return self._accept(best[1], best[2])
        assert prev is not None  # without a previous subnet every candidate is within bound
        return self._accept(prev, self._prev_macs)

    def _candidates(self, space: Any, prev: Any, target: int, count: int) -> list[Any]:
        """Fresh samples, mutations of the previous subnet (close in MACs, so the walk is never
        stranded) and crossovers of it with the extreme on the target's side (uniform samples
        rarely land in the end buckets)."""
        if prev is None:
            return [space.sample(self.rng, "random") for _ in range(count)]
        prev_bucket = int(self.bucket_of(np.array([self._prev_macs]))[0])
        extreme = space.sample(self.rng, "max" if target >= prev_bucket else "min")
        third = count // 3
        fresh = [space.sample(self.rng, "random") for _ in range(count - 2 * third)]
        near = [space.mutate(prev, self.rng, 0.2) for _ in range(third)]
        toward = [space.crossover(prev, extreme, self.rng) for _ in range(third)]
        return fresh + near + toward

    def _advance(self) -> int:
        """Next bucket of a walk that bounces between the ends of the range."""
        if self._bucket < 0:
            self._bucket = 0
            return 0
        nxt = self._bucket + self._direction
        if not 0 <= nxt < self.buckets:
            self._direction = -self._direction
            nxt = self._bucket + self._direction
        self._bucket = nxt
        return nxt

    def bucket_of(self, macs: np.ndarray) -> np.ndarray:
        assert self._range is not None
        low, high = self._range
        scaled = (np.asarray(macs, dtype=np.float64) - low) / max(high - low, 1) * self.buckets
        return np.clip(scaled.astype(np.int64), 0, self.buckets - 1)

    def _accept(self, arch: Any, macs: int) -> Any:
        self._prev, self._prev_macs = arch.model_dump(mode="json"), macs
        self._walk.append((int(self.bucket_of(np.array([macs]))[0]), macs))
        return arch

    # --- metrics and state -------------------------------------------------------------------
    @property
    def bound_macs(self) -> float:
        """The current bound in MACs (0 before the first step)."""
        return 0.0 if self._range is None else self.max_step * (self._range[1] - self._range[0])

    def metrics(self) -> dict[str, Any]:
        return {
            "walk_buckets": [b for b, _ in self._walk],
            "walk_macs": [m for _, m in self._walk],
            "walk_bound_macs": self.bound_macs,
        }

    def reset_metrics(self) -> None:
        self._walk = []

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["walk"] = {
            "range": None if self._range is None else list(self._range),
            "bucket": self._bucket,
            "direction": self._direction,
            "prev": self._prev,
            "prev_macs": self._prev_macs,
            "history": [list(x) for x in self._walk],
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        walk = state["walk"]
        self._range = None if walk["range"] is None else (walk["range"][0], walk["range"][1])
        self._bucket, self._direction = walk["bucket"], walk["direction"]
        self._prev, self._prev_macs = walk["prev"], walk["prev_macs"]
        self._walk = [(b, m) for b, m in walk["history"]]
