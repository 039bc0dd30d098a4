"""The accuracy dataset a predictor learns from: subnets spread over the MACs range, each
evaluated from the trained supernet after BN recalibration (on the holdout split by default, so
that the val split stays untouched for the final verification).

Subnets drawn uniformly at random pile up in the middle of the MACs range (a sum of many
independent choices), leaving the small and large ends, where the budgets usually are, with
few samples; stratifying over equal-width MACs bins and adding the min and max subnets covers
the whole range.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from nas.data import DatasetSplits

EvalSplit = Literal["holdout", "val"]
Batch = tuple[Any, Any]
Batches = Collection[Batch]
"""Re-iterable batches with a length (a list, or ``nas.data.loading`` batches)."""


class AccuracyRecord(BaseModel):
    """One measured subnet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: dict[str, Any]
    id: str
    macs: int = Field(ge=0)
    params: int = Field(ge=0)
    accuracy: float = Field(ge=0.0, le=100.0, description="Top-1 in percent.")


class AccuracyDataset(BaseModel):
    """Measured subnets of one space, stored with the job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    preset: str
    split: EvalSplit
    records: list[AccuracyRecord]

    def arrays(self, space: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(space.encode_batch(archs), accuracies)`` for ``Predictor.fit``."""
        if (space.name, space.preset) != (self.space, self.preset):
            raise ValueError(
                f"space: dataset is for {self.space}/{self.preset}, not {space.name}/{space.preset}"
            )
        archs = [space.arch_from_dict(r.arch) for r in self.records]
        return space.encode_batch(archs), np.array([r.accuracy for r in self.records])


def stratified_subnets(
    space: Any, num_subnets: int, rng: np.random.Generator, *, pool_factor: int = 20
) -> list[Any]:
    """The min and max subnets plus ``num_subnets - 2`` distinct others, one per equal-width
    MACs bin where the bin is reachable.

    Bounded: it draws a pool of ``pool_factor * num_subnets`` subnets once (a third uniform,
    a third each mutated from the min and the max subnet at a random rate, so both ends of the
    range are populated); bins that none of them falls in are filled from the rest of the
    pool, so it never loops waiting for a rare size.
    """
    if num_subnets < 2:
        raise ValueError(f"num_subnets: must be >= 2 (the min and max subnets), got {num_subnets}")
    if pool_factor < 1:
        raise ValueError(f"pool_factor: must be >= 1, got {pool_factor}")
    extremes = [space.sample(rng, "min"), space.sample(rng, "max")]
    size = pool_factor * num_subnets
    # random archs bunch up mid-range; mutants of the extremes with a random rate reach the ends
    pool = [space.sample(rng, "random") for _ in range(size - 2 * (size // 3))]
    for extreme in extremes:
        pool += [space.mutate(extreme, rng, float(p)) for p in rng.uniform(0, 1, size // 3)]
    ids = [a.id for a in pool]
    seen = {a.id for a in extremes}
    macs = space.complexity_batch(pool)[0].astype(np.float64)
    low, high = space.complexity_batch(extremes)[0].astype(np.float64)
    num_bins = num_subnets - 2
    edges = np.linspace(low, high, num_bins + 1)
    bins = np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, max(num_bins - 1, 0))
    chosen: list[Any] = list(extremes)
    order = rng.permutation(len(pool))
    first_in_bin: dict[int, int] = {}
    for index in order:  # a random pool member per bin, distinct networks only
        if int(bins[index]) not in first_in_bin and ids[index] not in seen:
            first_in_bin[int(bins[index])] = int(index)
            seen.add(ids[index])
    chosen += [pool[i] for i in sorted(first_in_bin.values())]
    for index in order:  # empty bins: any other distinct subnet from the pool
        if len(chosen) >= num_subnets:
            break
        if ids[index] not in seen:
            seen.add(ids[index])
            chosen.append(pool[index])
    return chosen[:num_subnets]


class SupernetAccuracy:
    """Top-1 (%) of archs run inside a trained supernet, each after BN recalibration.

    Not thread-safe: evaluating activates the arch and rewrites the BN statistics in place.
    """

    def __init__(
        self,
        supernet: Any,
        *,
        calibration: Batches,
        eval_batches: Batches,
        num_batches: int,
    ) -> None:
        if not len(calibration) or not len(eval_batches):
            raise ValueError("calibration/eval_batches: need at least one batch each")
        self.supernet = supernet
        self.calibration, self.eval_batches = calibration, eval_batches
        self.num_batches = num_batches

    @classmethod
    def from_checkpoint(
        cls,
        space: Any,
        data: DatasetSplits,
        state: dict[str, Any],
        *,
        split: EvalSplit = "holdout",
        eval_batch_size: int = 256,
        device: str | None = None,
    ) -> SupernetAccuracy:
        """Rebuild the supernet of a training checkpoint (``nas.training.load_checkpoint``) on
        ``device`` (a GPU when there is one); BN recalibrates on the same fixed train batches
        the trainer used, and the eval split streams through a loader on every call."""
        import torch

        from nas.data.loading import EvalBatches, FixedBatches
        from nas.training import TrainingConfig

        config = TrainingConfig.model_validate(state["config"])
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        supernet = space.build_supernet(num_classes=data.num_classes, in_channels=data.in_channels)
        supernet.load_state_dict(state["model"])
        supernet.to(where).eval()
        on_gpu = where.type == "cuda"
        if on_gpu:
            supernet.to(memory_format=torch.channels_last)
        calibration = FixedBatches(
            data.train,
            batch_size=config.batch_size,
            num_batches=config.bn_recalibration_batches,
            seed=config.seed,
            device=where,
            channels_last=on_gpu,
        )
        evaluated = data.holdout if split == "holdout" else data.val
        if len(evaluated) == 0:
            raise ValueError(f"split: the {split!r} split is empty; allowed values: holdout, val")
        batches = EvalBatches(
            evaluated,
            batch_size=eval_batch_size,
            num_workers=data.spec.num_workers,
            device=where,
            channels_last=on_gpu,
        )
        return cls(
            supernet,
            calibration=calibration,
            eval_batches=batches,
            num_batches=config.bn_recalibration_batches,
        )

    def __call__(self, archs: Sequence[Any]) -> np.ndarray:
        from nas.training import evaluate_subnet

        return np.array(
            [
                evaluate_subnet(
                    self.supernet,
                    arch,
                    calibration=self.calibration,
                    val=self.eval_batches,
                    num_batches=self.num_batches,
                )
                for arch in archs
            ],
            dtype=np.float64,
        )


def measure_subnets(
    space: Any,
    archs: Sequence[Any],
    evaluate: Callable[[Sequence[Any]], np.ndarray],
) -> list[AccuracyRecord]:
    """Records (arch, id, MACs, params, accuracy) of ``archs``, scored by ``evaluate``."""
    if not archs:
        return []
    macs, params = space.complexity_batch(archs)
    accuracy = evaluate(archs)
    return [
        AccuracyRecord(
            arch=arch.to_dict(),
            id=arch.id,
            macs=int(m),
            params=int(p),
            accuracy=float(a),
        )
        for arch, m, p, a in zip(archs, macs, params, accuracy, strict=True)
    ]


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items (work units for an actor pool)."""
    if size < 1:
        raise ValueError(f"size: must be >= 1, got {size}")
    return (items[i : i + size] for i in range(0, len(items), size))
