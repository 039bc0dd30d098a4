"""The supernet trainer: one loop for every sampler and schedule, locally or data-parallel.

The loop is deterministic given the config's seed: the data order is a function of (seed,
epoch), the samplers own their generators, and checkpoints hold every RNG state, so a resumed
run computes the same losses as an uninterrupted one.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.data import DatasetSplits, resize_batch
from nas.data.loading import EvalBatches, FixedBatches, TrainBatches
from nas.training.bn import evaluate_subnet
from nas.training.checkpoint import capture_rng_states, restore_rng_states, save_checkpoint
from nas.training.config import ScheduleName, TrainingConfig
from nas.training.losses import distillation_loss
from nas.training.lr import warmup_cosine_lr
from nas.training.optim import build_optimizer
from nas.training.progress import ProgressCallback, TrainingProgress
from nas.training.regularization import LargestOnlyRegularization
from nas.training.samplers import ArchSampler, Role, make_sampler
from nas.training.schedules import Phase, ShrunkSpace, build_phases

GradientSync = Callable[[Sequence[torch.Tensor]], None]
"""Averages tensors in place across data-parallel workers (gradients, BN buffers)."""
CheckpointFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SubnetLoss:
    """One subnet's forward/backward inside a step, as seen by a recording hook."""

    step: int
    index: int
    role: Role
    arch: Any
    target: Literal["labels", "distillation"]
    loss: float


@dataclass
class TrainingResult:
    epochs: int
    steps: int
    interrupted: bool
    step_losses: list[float] = field(default_factory=list)
    """Summed loss of every step this call ran (resume tests compare them)."""
    history: list[TrainingProgress] = field(default_factory=list)


def default_recipe(space: Any) -> tuple[ScheduleName, str]:
    """The space's declared ``default_training`` (schedule, sampler); BigNAS's otherwise."""
    recipe = getattr(space, "default_training", None)
    if recipe is None:
        return "single_stage", "sandwich"
    return recipe.schedule, recipe.sampler


class SupernetTrainer:
    """Trains ``space``'s supernet on ``data`` as ``config`` says.

    ``rank``/``world_size``/``sync`` make it one data-parallel worker: each takes its slice of
    every global batch, runs the same subnets (same sampler seed) and averages gradients
    through ``sync`` before the optimizer step. ``subnet_hooks`` see every subnet's loss,
    ``step_hooks`` the trainer after every optimizer step.
    """

    def __init__(
        self,
        space: Any,
        data: DatasetSplits,
        config: TrainingConfig,
        *,
        supernet: nn.Module | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_fn: CheckpointFn | None = None,
        progress: ProgressCallback | None = None,
        subnet_hooks: Sequence[Callable[[SubnetLoss], None]] = (),
        step_hooks: Sequence[Callable[[SupernetTrainer], None]] = (),
        log_every: int = 10,
        rank: int = 0,
        world_size: int = 1,
        sync: GradientSync | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if world_size > 1 and sync is None:
            raise ValueError("sync: required when world_size > 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.space, self.data, self.config = space, data, config
        self.rank, self.world_size, self.sync = rank, world_size, sync
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.use_bf16 = self.device.type == "cuda"
        schedule, sampler_name = default_recipe(space)
        self.schedule: ScheduleName = config.schedule or schedule
        self.phases: list[Phase] = build_phases(config, self.schedule)
        self.sampler: ArchSampler = make_sampler(config.sampler or sampler_name, config)  # type: ignore[arg-type]
        if supernet is None:
            with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
                torch.manual_seed(config.seed)
                supernet = space.build_supernet(
                    num_classes=data.num_classes, in_channels=data.in_channels
                )
        self.supernet = supernet.to(self.device)
        if self.use_bf16:
            self.supernet = self.supernet.to(memory_format=torch.channels_last)
        self.regularization = LargestOnlyRegularization(
            self.supernet, dropout=config.dropout, drop_connect=config.drop_connect
        )
        if config.batch_size > len(data.train):
            raise ValueError(
                f"batch_size: {config.batch_size} is larger than the {len(data.train)} "
                "training images"
            )
        workers = data.spec.num_workers
        self.train_batches = TrainBatches(
            data.train,
            batch_size=config.batch_size,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            num_workers=workers,
            device=self.device,
            channels_last=self.use_bf16,
        )
        self.steps_per_epoch = self.train_batches.steps_per_epoch
        self.val_batches = EvalBatches(
            data.val, num_workers=workers, device=self.device, channels_last=self.use_bf16
        )
        self._calibration: FixedBatches | None = None
        if checkpoint_fn is None and checkpoint_dir is not None:
            directory = Path(checkpoint_dir)

            def checkpoint_fn(state: dict[str, Any]) -> None:
                if self.rank == 0:
                    save_checkpoint(state, directory)

        self.checkpoint_fn = checkpoint_fn
        self.progress = progress
        self.subnet_hooks = list(subnet_hooks)
        self.step_hooks = list(step_hooks)
        self.log_every = log_every
        self.epoch = 0  # global epoch across phases
        self.step_in_epoch = 0
        self.global_step = 0
        self._fresh = True
        self._pending_optimizer: dict[str, Any] | None = None
        self._phase_index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self._stop = threading.Event()

    # --- positions ---------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def phase_at(self, epoch: int) -> tuple[int, int]:
        """(phase index, first epoch of that phase) of global ``epoch``."""
        start = 0
        for i, phase in enumerate(self.phases):
            if epoch < start + phase.epochs:
                return i, start
            start += phase.epochs
        return len(self.phases) - 1, start - self.phases[-1].epochs

    def phase_space(self, index: int | None = None) -> ShrunkSpace:
        phase = self.phases[self._phase_index if index is None else index]
        return ShrunkSpace(self.space, phase.frozen)

    def request_stop(self) -> None:
        """Finish the current step, checkpoint and return (what SIGTERM does)."""
        self._stop.set()

    # --- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainingResult:
        """Train from the current position (0, or a loaded checkpoint) to the last epoch."""
        if self._fresh:
            self._seed_globals()
            self._fresh = False
        result = TrainingResult(epochs=self.epoch, steps=self.global_step, interrupted=False)
        with self._sigterm_stops():
            while self.epoch < self.total_epochs:
                self._enter_phase()
                if not self._run_epoch(result):
                    result.interrupted = self.epoch < self.total_epochs or self.step_in_epoch > 0
                    if self.step_in_epoch > 0:  # mid-epoch: the epoch-end checkpoint is older
                        self._checkpoint()
                    break
        result.epochs, result.steps = self.epoch, self.global_step
        return result

    def _seed_globals(self) -> None:
        """Dropout and augmentation draw from the global generators; seed them once."""
        import random

        random.seed(self.config.seed)
        np.random.seed(self.config.seed)
        torch.manual_seed(self.config.seed)

    def _enter_phase(self) -> None:
        index, start = self.phase_at(self.epoch)
        if index == self._phase_index:
            return
        self._phase_index = index
        phase = self.phases[index]
        at_start = self.epoch == start and self.step_in_epoch == 0
        if at_start and phase.reorder_channels:
            self.supernet.reorder_channels()  # type: ignore[operator]
        self.optimizer = build_optimizer(self.supernet, self.config, phase.lr)
        if self._pending_optimizer is not None and not at_start:
            self.optimizer.load_state_dict(self._pending_optimizer)
        self._pending_optimizer = None
        self._space = self.phase_space(index)

    def _lr(self) -> float:
        index, start = self.phase_at(self.epoch)
        phase = self.phases[index]
        step = (self.epoch - start) * self.steps_per_epoch + self.step_in_epoch
        return warmup_cosine_lr(
            step,
            total_steps=phase.epochs * self.steps_per_epoch,
            warmup_steps=round(self.config.warmup_epochs * self.steps_per_epoch),
            peak=phase.lr,
            floor=self.config.min_lr,
        )

    def _run_epoch(self, result: TrainingResult) -> bool:
        """Train the rest of the current epoch; False when a stop was requested."""
        if self.step_in_epoch == 0:
            self.sampler.reset_metrics()
        batches = self.train_batches.epoch(self.epoch, start=self.step_in_epoch)
        window: dict[str, list[float]] = defaultdict(list)  # since the last step report
        epoch_losses: dict[str, list[float]] = defaultdict(list)
        images_seen, started = 0, time.perf_counter()
        for images, labels in batches:
            lr = self._lr()
            losses = self.train_step(images, labels, lr)
            self.global_step += 1
            self.step_in_epoch += 1
            for hook in self.step_hooks:
                hook(self)
            result.step_losses.append(sum(loss for _, loss in losses))
            for role, loss in losses:
                window[role].append(loss)
                epoch_losses[role].append(loss)
            images_seen += labels.numel() * self.world_size
            if self.global_step % self.log_every == 0:
                self._report("step", lr, window, images_seen / (time.perf_counter() - started))
            if self._stop.is_set():
                return False
        speed = images_seen / max(time.perf_counter() - started, 1e-9)
        self.epoch += 1
        self.step_in_epoch = 0
        self._sync_buffers()
        progress = self._report("epoch", self._lr_last(), epoch_losses, speed)
        result.history.append(progress)
        self._checkpoint()
        return not self._stop.is_set()

    def _lr_last(self) -> float:
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor, lr: float
    ) -> list[tuple[str, float]]:
        """One optimizer step over the sampler's subnets; returns (role, loss) per subnet."""
        assert self.optimizer is not None
        optimizer, config = self.optimizer, self.config
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = images.to(self.device), labels.to(self.device)
        self.supernet.train()
        optimizer.zero_grad(set_to_none=True)
        teacher: torch.Tensor | None = None
        losses: list[tuple[str, float]] = []
        if self.sampler.wants_scores:
            self.sampler.scorer = lambda archs: self.minibatch_losses(archs, images, labels)
        for index, subnet in enumerate(self.sampler.plan(self._space)):
            self.supernet.set_active(subnet.arch)  # type: ignore[operator]
            self.regularization.use(largest=subnet.role == "max")
            x = resize_batch(images, subnet.arch.resolution)
            if self.use_bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.use_bf16):
                logits = self.supernet(x)
            if teacher is not None and subnet.role != "max":
                loss = distillation_loss(logits, teacher, config.kd_temperature)
                target: Literal["labels", "distillation"] = "distillation"
            else:
                loss = F.cross_entropy(
                    logits.float(), labels, label_smoothing=config.label_smoothing
                )
                target = "labels"
                if self.sampler.distill and subnet.role == "max":
                    teacher = logits.detach()
            loss.backward()
            value = float(loss.detach())
            losses.append((subnet.role, value))
            event = SubnetLoss(self.global_step, index, subnet.role, subnet.arch, target, value)
            for hook in self.subnet_hooks:
                hook(event)
        grads = [p.grad for p in self.supernet.parameters() if p.grad is not None]
        if self.sync is not None and self.world_size > 1:
            self.sync(grads)  # same subnets on every worker, so the same grads are non-None
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.supernet.parameters() if p.grad is not None], config.grad_clip
            )
        optimizer.step()
        return losses

    @torch.no_grad()
    def minibatch_losses(
        self, archs: Sequence[Any], images: torch.Tensor, labels: torch.Tensor
    ) -> np.ndarray:
        """Label loss of each arch on this worker's batch, averaged over workers (so that every
        worker ranks them alike); train-mode BN, no dropout, no gradients."""
        values = []
        for arch in archs:
            self.supernet.set_active(arch)  # type: ignore[operator]
            self.regularization.use(largest=False)
            x = resize_batch(images, arch.resolution)
            if self.use_bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.use_bf16):
                logits = self.supernet(x)
            values.append(F.cross_entropy(logits.float(), labels))
        stacked = torch.stack(values)
        if self.sync is not None and self.world_size > 1:
            self.sync([stacked])
        return stacked.cpu().numpy()

    def _sync_buffers(self) -> None:
        """Average BN running statistics so that every worker holds the same model."""
        if self.sync is None or self.world_size == 1:
            return
        floats = [b for b in self.supernet.buffers() if b.is_floating_point()]
        self.sync(floats)

    # --- evaluation and reporting ------------------------------------------------------------
    def calibration_batches(self) -> FixedBatches:
        """The fixed train batches every BN recalibration of this run uses (read once)."""
        if self._calibration is None:
            self._calibration = FixedBatches(
                self.data.train,
                batch_size=self.config.batch_size,
                num_batches=self.config.bn_recalibration_batches,
                seed=self.config.seed,
                device=self.device,
                channels_last=self.use_bf16,
            )
        return self._calibration

    def evaluate(self, arch: Any) -> float:
        """Val top-1 (%) of ``arch`` from the supernet, after BN recalibration."""
        return evaluate_subnet(
            self.supernet,
            arch,
            calibration=self.calibration_batches(),
            val=self.val_batches,
            num_batches=self.config.bn_recalibration_batches,
        )

    def _report(
        self,
        kind: Literal["step", "epoch"],
        lr: float,
        window: dict[str, list[float]],
        speed: float,
    ) -> TrainingProgress:
        max_acc = min_acc = None
        if kind == "epoch" and (
            self.epoch % self.config.eval_every == 0 or self.epoch == self.total_epochs
        ):
            rng = np.random.default_rng(0)
            max_acc = self.evaluate(self._space.sample(rng, "max"))
            min_acc = self.evaluate(self._space.sample(rng, "min"))
        progress = TrainingProgress(
            kind=kind,
            epoch=self.epoch,
            step=self.global_step,
            total_steps=self.total_epochs * self.steps_per_epoch,
            phase=self.phases[self._phase_index].name,
            lr=lr,
            losses={role: float(np.mean(v)) for role, v in window.items()},
            samples_per_s=speed,
            max_val_acc=max_acc,
            min_val_acc=min_acc,
            sampler=self.sampler.metrics() if kind == "epoch" else {},
        )
        if kind == "step":
            window.clear()
        if self.progress is not None:
            self.progress(progress)
        return progress

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain types."""
        assert self.optimizer is not None
        return {
            "model": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": {"phase": self._phase_index, "lr": self._lr_last()},
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng_states(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "config": self.config.model_dump(mode="json"),
            "schedule": self.schedule,
            "sampler_name": self.sampler.name,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (``checkpoint.load_checkpoint``); the config must match."""
        if state["config"] != self.config.model_dump(mode="json"):
            raise ValueError("checkpoint: it was written with a different training config")
        self.supernet.load_state_dict(state["model"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng_states(state["rng"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self._pending_optimizer = state["optimizer"]
        self._phase_index = -1
        self._fresh = False

    def _checkpoint(self) -> None:
        if self.checkpoint_fn is not None:
            self.checkpoint_fn(self.state_dict())

    @contextmanager
    def _sigterm_stops(self) -> Iterator[None]:
        """SIGTERM asks for a checkpoint at the next step boundary (main thread only: signal
        handlers cannot be installed elsewhere, e.g. in a Ray Train worker thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
