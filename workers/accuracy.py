"""The accuracy dataset on Ray: an actor pool in which each actor loads the supernet checkpoint
once and evaluates its share of the subnets.

Loading a checkpoint and the dataset costs far more than one subnet evaluation, so the work is
cut into small chunks that a fixed set of long-lived actors pull from (``ray.util.ActorPool``):
fast actors take more chunks, and the result keeps the order of the requested subnets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.data import DatasetSpec
from nas.predictors.dataset import AccuracyDataset, AccuracyRecord, EvalSplit, chunks
from workers.cluster import connect_ray

ProgressFn = Callable[[int, int], None]
"""Called with (subnets done, subnets in all) after every finished chunk."""


class AccuracyDatasetJob(BaseModel):
    """What to measure: a space, its dataset, a trained checkpoint and which subnets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str
    preset: str = "tiny"
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    checkpoint: Path = Field(description="A training checkpoint file or its directory.")
    num_subnets: int = Field(default=100, ge=2, le=100_000)
    archs: list[dict[str, Any]] | None = Field(
        default=None, description="Measure exactly these archs instead of stratified sampling."
    )
    split: EvalSplit = "holdout"
    seed: int = Field(default=0, ge=0, description="Seeds the stratified sampling.")
    num_actors: int = Field(default=2, ge=1, le=1024)
    chunk_size: int = Field(default=8, ge=1, le=10_000, description="Subnets per actor call.")
    torch_threads: int = Field(default=1, ge=1, le=256, description="Intra-op threads per actor.")
    num_gpus: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="GPU share per actor; with one, the actor evaluates there (bf16).",
    )


#: The GPU share an evaluator actor takes by default when the cluster has GPUs: four actors
#: per GPU keep it busy while each one's CPU side (loading, recalibration bookkeeping) runs.
DEFAULT_EVALUATOR_GPUS = 0.25


def evaluator_gpus(requested: float | None, cluster_gpus: float) -> float:
    """The GPU share each evaluator actor asks Ray for: ``requested`` when set (0 = CPU), else
    ``DEFAULT_EVALUATOR_GPUS`` on a cluster with GPUs and 0 on one without."""
    if requested is not None:
        if requested > 0 and cluster_gpus <= 0:
            raise ValueError(
                f"placement.evaluator_gpus: {requested} asks for a GPU share, but the Ray "
                "cluster has no GPU; use 0 or leave it unset"
            )
        return requested
    return DEFAULT_EVALUATOR_GPUS if cluster_gpus > 0 else 0.0


def _space(job: AccuracyDatasetJob, data: Any) -> Any:
    import search_spaces

    return search_spaces.get(
        job.space, preset=job.preset, num_classes=data.num_classes, in_channels=data.in_channels
    )


class SubnetEvaluator:
    """Body of one actor: the supernet, its BN calibration batches and the eval split."""

    def __init__(self, job: dict[str, Any], data_root: str | None) -> None:
        import torch

        from nas.data import load_dataset
        from nas.predictors.dataset import SupernetAccuracy
        from nas.training import load_checkpoint

        self.job = AccuracyDatasetJob.model_validate(job)
        torch.set_num_threads(self.job.torch_threads)
        data = load_dataset(self.job.dataset, data_root=data_root)
        self.space = _space(self.job, data)
        state = load_checkpoint(self.job.checkpoint)
        self.evaluate = SupernetAccuracy.from_checkpoint(
            self.space, data, state, split=self.job.split
        )

    def measure(self, arch_dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from nas.predictors.dataset import measure_subnets

        archs = [self.space.arch_from_dict(d) for d in arch_dicts]
        return [
            r.model_dump(mode="json") for r in measure_subnets(self.space, archs, self.evaluate)
        ]


def choose_archs(job: AccuracyDatasetJob) -> list[dict[str, Any]]:
    """The job's explicit archs (validated), or a stratified sample of ``num_subnets``."""
    import search_spaces

    space = search_spaces.get(job.space, preset=job.preset)
    if job.archs is not None:
        return [space.arch_from_dict(a).to_dict() for a in job.archs]
    from nas.predictors.dataset import stratified_subnets

    rng = np.random.default_rng(job.seed)
    return [a.to_dict() for a in stratified_subnets(space, job.num_subnets, rng)]


class SubnetEvaluatorPool:
    """Long-lived evaluator actors for one job: ``measure(archs)`` spreads chunks over them.

    A context manager (the actors are killed on exit). Besides building the accuracy
    dataset it can back a ``nas.search.MeasuredObjective``, so that LINAS measures each
    round's subnets in parallel with the checkpoint loaded once per actor.
    """

    def __init__(self, job: AccuracyDatasetJob, *, data_root: str | Path | None = None) -> None:
        if not Path(job.checkpoint).exists():
            raise ValueError(f"checkpoint: {job.checkpoint} does not exist")
        connect_ray()
        import ray

        self.job = job
        actor_class = ray.remote(num_cpus=1, num_gpus=job.num_gpus)(SubnetEvaluator)
        payload = job.model_dump(mode="json")
        root = None if data_root is None else str(data_root)
        self._actors = [actor_class.remote(payload, root) for _ in range(job.num_actors)]

    def __enter__(self) -> SubnetEvaluatorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    def measure(
        self, arch_dicts: list[dict[str, Any]], progress: ProgressFn | None = None
    ) -> list[AccuracyRecord]:
        """Records of ``arch_dicts`` in their order; chunks go to whichever actor is free."""
        from ray.util import ActorPool

        if not self._actors:
            raise RuntimeError("pool: already closed")
        work = list(chunks(arch_dicts, self.job.chunk_size))
        records: list[AccuracyRecord] = []
        pool = ActorPool(self._actors)
        for part in pool.map(lambda actor, part: actor.measure.remote(list(part)), work):
            records += [AccuracyRecord.model_validate(r) for r in part]
            if progress is not None:
                progress(len(records), len(arch_dicts))
        return records

    def accuracies(self, archs: list[Any]) -> np.ndarray:
        """Top-1 (%) of arch objects: the ``measure`` of a ``MeasuredObjective``."""
        return np.array([r.accuracy for r in self.measure([a.to_dict() for a in archs])])


def build_accuracy_dataset(
    job: AccuracyDatasetJob,
    *,
    data_root: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> AccuracyDataset:
    """Measure the job's subnets on the connected Ray cluster (a local one when none is)."""
    if not Path(job.checkpoint).exists():
        raise ValueError(f"checkpoint: {job.checkpoint} does not exist")
    archs = choose_archs(job)
    with SubnetEvaluatorPool(job, data_root=data_root) as pool:
        records = pool.measure(archs, progress)
    return AccuracyDataset(space=job.space, preset=job.preset, split=job.split, records=records)
