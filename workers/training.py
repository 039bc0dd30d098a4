"""Data-parallel supernet training on Ray Train (``TorchTrainer``).

Every worker builds the same supernet and sampler from the same seed, so all of them run the
same subnet at every step; each takes its slice of the global batch and gradients are
averaged with one all-reduce (gloo on CPU, NCCL on GPU) before the optimizer step. Only the
parameters the step's subnets used carry gradients, and that set is the same on every worker,
so a manual all-reduce replaces DDP (which cannot follow a changing active subnet). Rank 0
reports a checkpoint every epoch; ``FailureConfig`` restarts the workers from the latest one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nas.data import DatasetSpec
from nas.training import TrainingConfig
from workers.cluster import connect_ray
from workers.spec import WorkerPlacement

ProgressFn = Callable[[dict[str, Any]], None]


class TrainJob(BaseModel):
    """What ``nas train job.yaml`` reads: a space, a dataset, a training config, an output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str
    preset: str = "tiny"
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output_dir: Path = Path("runs/supernet")
    num_workers: int = Field(default=1, ge=1, le=1024)
    use_gpu: bool | None = Field(
        default=None,
        description="None: when the placement asks for GPUs, or the cluster has one per worker.",
    )
    placement: WorkerPlacement = Field(default_factory=WorkerPlacement)
    max_failures: int = Field(default=2, ge=0, le=100)


def _average(tensors: Sequence[Any]) -> None:
    """Mean of each tensor over all workers, in place, with one all-reduce per dtype."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    by_dtype: dict[Any, list[Any]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


class _WeightsAgree:
    """Step hook: checks after every step that all workers hold bit-identical parameters."""

    def __init__(self) -> None:
        self.identical = True

    def __call__(self, trainer: Any) -> None:
        import torch
        import torch.distributed as dist

        flat = torch.cat([p.detach().reshape(-1) for p in trainer.supernet.parameters()])
        high, low = flat.clone(), flat.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        self.identical = self.identical and torch.equal(high, low)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (also the single-worker default)."""
    import ray.train
    import torch.distributed as dist

    import search_spaces
    from nas.data import load_dataset
    from nas.training import SupernetTrainer, TrainingProgress, load_checkpoint, save_checkpoint

    job = TrainJob.model_validate(loop_config["job"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    data = load_dataset(job.dataset, data_root=loop_config.get("data_root"))
    space = search_spaces.get(
        job.space, preset=job.preset, num_classes=data.num_classes, in_channels=data.in_channels
    )
    queue = loop_config.get("progress_queue")
    state: dict[str, Any] | None = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a resumed attempt, or workers restarted after one failed
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory)
    if queue is not None:  # where each worker runs and what it resumed: the job log shows it
        queue.put(
            {
                "kind": "worker",
                "rank": rank,
                "world_size": world,
                "node_id": ray.get_runtime_context().get_node_id(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "device": str(ray.train.torch.get_device()),
                "resumed_from_epoch": None if state is None else state["epoch"],
            }
        )
    latest: dict[str, Any] = {}
    agree = _WeightsAgree() if loop_config.get("check_weights_agree") else None
    fail_after = loop_config.get("inject_failure_after_epoch")
    marker = Path(loop_config.get("failure_marker", ".")) / "injected_failure"

    def progress(event: TrainingProgress) -> None:
        if event.kind == "epoch":
            latest.clear()
            latest.update(event.to_dict())
        if rank == 0 and queue is not None:
            queue.put(event.to_dict())

    def report(state: dict[str, Any]) -> None:
        metrics = {**latest, "epoch": state["epoch"], "rank": rank}
        if agree is not None:
            metrics["weights_identical"] = agree.identical
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(state, tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=checkpoint)
        else:
            ray.train.report(metrics, checkpoint=None)
        if fail_after is not None and state["epoch"] == fail_after and not marker.exists():
            dist.barrier()
            if rank == 0:
                marker.touch()
            raise RuntimeError("injected failure (testing FailureConfig)")

    trainer = SupernetTrainer(
        space,
        data,
        job.training,
        checkpoint_fn=report,
        progress=progress,
        step_hooks=[agree] if agree is not None else [],
        rank=rank,
        world_size=world,
        sync=_average if world > 1 else None,
        device=ray.train.torch.get_device(),
    )
    if state is not None:
        trainer.load_state_dict(state)
    trainer.fit()


def train_local(
    job: TrainJob, *, progress: ProgressFn | None = None, data_root: str | Path | None = None
) -> dict[str, Any]:
    """Train ``job`` in this process without Ray (notebooks, quick demos); same checkpoints."""
    import search_spaces
    from nas.data import load_dataset
    from nas.training import SupernetTrainer, load_checkpoint

    data = load_dataset(job.dataset, data_root=data_root)
    space = search_spaces.get(
        job.space, preset=job.preset, num_classes=data.num_classes, in_channels=data.in_channels
    )
    output = job.output_dir.resolve()
    trainer = SupernetTrainer(
        space,
        data,
        job.training,
        checkpoint_dir=output,
        progress=None if progress is None else (lambda event: progress(event.to_dict())),
    )
    if (output / "latest.pt").exists():
        trainer.load_state_dict(load_checkpoint(output))
    result = trainer.fit()
    return result.history[-1].to_dict() if result.history else {}


def _scaling(job: TrainJob, cluster_gpus: float) -> dict[str, Any]:
    """ScalingConfig arguments: the job's placement, 1 CPU per worker unless it says more,
    and GPUs when asked for or when the cluster has one for every worker."""
    resources = {"CPU": 1.0, **job.placement.resources_per_worker}
    if job.use_gpu is not None:
        use_gpu = job.use_gpu
    elif "GPU" in job.placement.resources_per_worker:
        use_gpu = True
    else:
        use_gpu = cluster_gpus >= job.num_workers
    if use_gpu:
        resources.setdefault("GPU", 1.0)
    else:
        resources.pop("GPU", None)
    return {
        "num_workers": job.num_workers,
        "use_gpu": use_gpu,
        "resources_per_worker": resources,
        "placement_strategy": job.placement.strategy,
    }


def train_distributed(
    job: TrainJob,
    *,
    progress: ProgressFn | None = None,
    data_root: str | Path | None = None,
    extra_loop_config: dict[str, Any] | None = None,
    on_worker: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train ``job`` on the connected Ray cluster (a local one is started when none is).

    Resumes from ``output_dir/latest.pt`` when it exists; writes the final checkpoint there,
    so ``output_dir`` must be on storage every node shares (``workers.storage``). Returns the
    last epoch's metrics. ``progress`` receives every report of rank 0; ``on_worker`` one
    event per worker start with its rank, Ray node id, host and torch device.
    """
    connect_ray()
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    from nas.training import CHECKPOINT_NAME

    output = job.output_dir.resolve()
    output.mkdir(parents=True, exist_ok=True)
    queue = Queue() if progress is not None or on_worker is not None else None
    loop_config: dict[str, Any] = {
        "job": job.model_dump(mode="json"),
        "data_root": None if data_root is None else str(data_root),
        "progress_queue": queue,
        "failure_marker": str(output),
        **(extra_loop_config or {}),
    }
    resume = None
    if (output / CHECKPOINT_NAME).exists():
        resume = ray.train.Checkpoint.from_directory(str(output))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(**_scaling(job, ray.cluster_resources().get("GPU", 0.0))),
        run_config=RunConfig(
            name="supernet",
            storage_path=str(output / "ray"),
            failure_config=FailureConfig(max_failures=job.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        resume_from_checkpoint=resume,
    )
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="ray-train-driver", daemon=True)
    thread.start()
    while thread.is_alive() or (queue is not None and not queue.empty()):
        if queue is None:
            thread.join(0.5)
            continue
        with contextlib.suppress(Empty):
            event = queue.get(timeout=0.5)
            handler = on_worker if event.get("kind") == "worker" else progress
            if handler is not None:
                handler(event)
    thread.join()
    if queue is not None:
        queue.shutdown()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            shutil.copyfile(Path(directory) / CHECKPOINT_NAME, output / CHECKPOINT_NAME)
    return dict(result.metrics or {})
