"""Fine-tuning one subnet standalone from the weights it inherited from the supernet.

Once-for-All (arXiv:1908.09791) reports that a subnet taken from a trained supernet
gains accuracy from a few epochs of training on its own; BigNAS (arXiv:2003.11142) argues that
its recipe makes this unnecessary. Which holds depends on the supernet, so a job measures it:
``finetune_subnet`` trains an extracted (static) subnet with one ``FinetuneRecipe`` (cosine LR,
label-smoothed cross-entropy, optional distillation from a frozen teacher such as the
supernet's largest subnet), and ``recipe_space`` gives the bounds a tuner samples recipes from
(``workers.finetuning`` runs Ray Tune with Optuna over them). No Ray here: a notebook calls
``finetune_subnet`` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nas.data import resize_batch
from nas.training.config import OptimizerName, TrainingConfig
from nas.training.losses import distillation_loss
from nas.training.lr import warmup_cosine_lr
from nas.training.optim import build_optimizer

Batch = tuple[torch.Tensor, torch.Tensor]
#: ``on_epoch(epoch, model)`` after each epoch (1-based); returning False stops the run.
EpochCallback = Callable[[int, nn.Module], bool | None]


class FinetuneRecipe(BaseModel):
    """The hyper-parameters of one fine-tuning run: what a tuner chooses per subnet."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(gt=0.0, le=10.0, description="Peak of the cosine decay (no warmup).")
    weight_decay: float = Field(ge=0.0, lt=1.0, description="On weights, not on BN or biases.")
    epochs: int = Field(ge=1, le=1_000)
    label_smoothing: float = Field(ge=0.0, le=0.5)
    kd_weight: float = Field(
        ge=0.0, le=1.0, description="Share of the distillation loss; the rest is on labels."
    )


class RecipeSpace(BaseModel):
    """Bounds ``(low, high)`` of every recipe field, both included; ``lr`` and
    ``weight_decay`` are sampled log-uniformly (``LOG``), ``epochs`` as an integer, and a
    field whose bounds are equal is fixed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Fields whose useful values span orders of magnitude.
    LOG: ClassVar[frozenset[str]] = frozenset({"lr", "weight_decay"})

    lr: tuple[float, float] = (1e-4, 5e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-3)
    epochs: tuple[int, int] = (1, 2)
    label_smoothing: tuple[float, float] = (0.0, 0.2)
    kd_weight: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        for name, (low, high) in self.bounds().items():
            if low > high:
                raise ValueError(f"{name}: low {low} is above high {high}")
            if name in self.LOG and low <= 0:
                raise ValueError(f"{name}: sampled log-uniformly, so low must be > 0; got {low}")
        # the box's corners are recipes, so is every point inside it
        for corner in (0, 1):
            try:
                FinetuneRecipe.model_validate({n: b[corner] for n, b in self.bounds().items()})
            except ValueError as exc:
                raise ValueError(f"bounds outside what a recipe allows: {exc}") from None
        return self

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {name: getattr(self, name) for name in FinetuneRecipe.model_fields}


def recipe_space(
    max_epochs: int, *, distill: bool = True, lr: tuple[float, float] = (1e-4, 5e-2)
) -> RecipeSpace:
    """The default bounds: SGD-momentum learning rates well below the supernet's (the weights
    are already trained), 1..``max_epochs`` epochs, and a distillation weight in [0, 1], or 0
    when there is no teacher (``distill`` off)."""
    if max_epochs < 1:
        raise ValueError(f"max_epochs: must be >= 1, got {max_epochs}")
    return RecipeSpace(lr=lr, epochs=(1, max_epochs), kd_weight=(0.0, 1.0 if distill else 0.0))


class EpochBatches(Protocol):
    """Training batches epoch by epoch (``nas.data.loading.TrainBatches``): the order is a
    function of the epoch, so a resumed run sees the batches an uninterrupted one would."""

    @property
    def steps_per_epoch(self) -> int: ...

    def epoch(self, epoch: int) -> Iterable[Batch]: ...


@dataclass(frozen=True)
class Teacher:
    """A frozen model whose softened predictions the student also learns (in eval mode, at
    its own input resolution)."""

    model: nn.Module
    resolution: int
    temperature: float = 1.0


@dataclass
class FinetuneOutcome:
    """How a run ended: epochs completed (of the recipe's), and whether ``on_epoch`` stopped it
    before the recipe's last epoch."""

    epochs: int
    stopped: bool
    losses: list[float] = field(default_factory=list, repr=False)  # mean train loss per epoch


def recipe_optimizer(
    model: nn.Module,
    recipe: FinetuneRecipe,
    *,
    optimizer: OptimizerName = "sgd",
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """The supernet training's optimizer (``build_optimizer``: no decay on BN and biases) with
    the recipe's weight decay; its state is what a resumed run loads."""
    config = TrainingConfig(
        optimizer=optimizer, momentum=momentum, weight_decay=recipe.weight_decay
    )
    return build_optimizer(model, config, recipe.lr)


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 on a GPU, float32 elsewhere, as the supernet trainer runs."""
    return torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")


def _loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: FinetuneRecipe,
    resolution: int,
    teacher: Teacher | None,
) -> torch.Tensor:
    """(1 - kd) x label-smoothed cross-entropy + kd x distillation from the teacher."""
    with _autocast(images.device):
        logits = model(resize_batch(images, resolution))
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=recipe.label_smoothing)
    kd = recipe.kd_weight
    if teacher is None or kd == 0.0:  # no teacher forward at all
        return loss
    with torch.no_grad(), _autocast(images.device):
        target = teacher.model(resize_batch(images, teacher.resolution))
    return (1.0 - kd) * loss + kd * distillation_loss(logits, target, teacher.temperature)


def finetune_subnet(
    model: nn.Module,
    train: EpochBatches,
    recipe: FinetuneRecipe,
    *,
    resolution: int,
    teacher: Teacher | None = None,
    on_epoch: EpochCallback | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    start_epoch: int = 0,
    seed: int = 0,
) -> FinetuneOutcome:
    """Train ``model`` (a static subnet, on its device) for the epochs ``start_epoch`` ..
    ``recipe.epochs - 1`` with a cosine LR over the whole recipe, so a run resumed at an epoch
    boundary (``start_epoch`` and the ``optimizer`` it saved) continues the same schedule.

    Dropout draws from the global RNG, seeded by (``seed``, epoch) inside a fork of it: runs
    repeat exactly and the caller's RNG state is untouched; the batch order is ``train``'s.
    After each epoch ``on_epoch(epoch, model)`` may evaluate, checkpoint, report, and stop the
    run by returning False. The model's train/eval mode is restored at the end.
    """
    if recipe.kd_weight > 0 and teacher is None:
        raise ValueError(f"teacher: recipe.kd_weight is {recipe.kd_weight}; it needs a teacher")
    if not 0 <= start_epoch <= recipe.epochs:
        raise ValueError(f"start_epoch: must lie in [0, {recipe.epochs}], got {start_epoch}")
    steps = train.steps_per_epoch
    if steps < 1:
        raise ValueError("train: yields no full batch; use a smaller batch size")
    device = next(model.parameters()).device
    if optimizer is None:
        optimizer = recipe_optimizer(model, recipe)
    if teacher is not None:
        teacher.model.eval()
    was_training = model.training
    outcome = FinetuneOutcome(epochs=start_epoch, stopped=False)
    total_steps = recipe.epochs * steps
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        for epoch in range(start_epoch, recipe.epochs):
            torch.manual_seed(seed * 1_000_003 + epoch)
            model.train()
            summed, count = torch.zeros((), device=device), 0
            for step, (images, labels) in enumerate(train.epoch(epoch)):
                lr = warmup_cosine_lr(
                    epoch * steps + step, total_steps=total_steps, warmup_steps=0, peak=recipe.lr
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = _loss(model, images, labels, recipe, resolution, teacher)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                summed += loss.detach()
                count += 1
            outcome.losses.append(float(summed) / max(count, 1))  # one sync per epoch
            outcome.epochs = epoch + 1
            if on_epoch is not None and on_epoch(epoch + 1, model) is False:
                outcome.stopped = epoch + 1 < recipe.epochs
                break
    model.train(was_training)
    return outcome
