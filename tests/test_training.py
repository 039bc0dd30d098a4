"""Supernet training on the real tiny spaces: samplers, schedules, BN recalibration, resume."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

import search_spaces
from nas.data import DatasetSpec, DatasetSplits, load_dataset, resize_batch
from nas.training import (
    CHECKPOINT_NAME,
    AttentiveSampler,
    ComplexityAwareSampler,
    ShrunkSpace,
    SubnetLoss,
    SupernetTrainer,
    TrainingConfig,
    TrainingProgress,
    default_recipe,
    load_checkpoint,
    recalibrate_bn,
)
from nas.training.bn import accuracy, batch_norms
from nas.training.schedules import build_phases, split_epochs

FAST = {"warmup_epochs": 0.0, "bn_recalibration_batches": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset(DatasetSpec(kind="digits"))


@pytest.fixture(scope="module")
def small() -> DatasetSplits:
    """About 290 training images: enough steps for resume tests, cheap enough for many runs."""
    return load_dataset(DatasetSpec(kind="synthetic", num_samples=400, resolution=24))


@pytest.fixture(scope="module")
def small_augmented() -> DatasetSplits:
    """``small`` augmented (pad, crop, flip)."""
    spec = DatasetSpec(kind="synthetic", num_samples=400, resolution=24, augment="pad_crop_flip")
    return load_dataset(spec)


@pytest.fixture(scope="module")
def sandwich_run(digits: DatasetSplits) -> tuple[SupernetTrainer, float, list[TrainingProgress]]:
    """One digits epoch of the sandwich rule, shared by the tests that need a trained supernet."""
    space = search_spaces.get("ofa_mbv3", preset="tiny")
    config = TrainingConfig(epochs=1, schedule="single_stage", sampler="sandwich", **FAST)
    reports: list[TrainingProgress] = []
    trainer = SupernetTrainer(space, digits, config, progress=reports.append)
    before = _label_loss(trainer, space.sample(np.random.default_rng(0), "max"))
    trainer.fit()
    return trainer, before, reports


def _label_loss(trainer: SupernetTrainer, arch: object) -> float:
    """Cross-entropy of ``arch`` on fixed training batches, after BN recalibration."""
    batches = trainer.calibration_batches()
    recalibrate_bn(trainer.supernet, arch, batches, len(batches))
    trainer.supernet.eval()
    with torch.no_grad():
        losses = [
            F.cross_entropy(trainer.supernet(resize_batch(x, arch.resolution)), y)  # type: ignore[attr-defined]
            for x, y in batches
        ]
    return float(torch.stack(losses).mean())


# --- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("batch_size", 1),
        ("optimizer", "rmsprop"),
        ("sampler", "attentive_best"),
        ("label_smoothing", 1.0),
        ("complexity_max_step", 0.01),
        ("unknown_field", 1),
    ],
)
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        TrainingConfig.model_validate({field: value})


def test_phases_must_be_ordered_and_add_up() -> None:
    with pytest.raises(ValidationError, match="phases"):
        TrainingConfig(
            epochs=2, phases=[{"name": "kernel", "epochs": 1}, {"name": "full", "epochs": 1}]
        )
    with pytest.raises(ValidationError, match="phases"):
        TrainingConfig(epochs=5, phases=[{"name": "full", "epochs": 1}])


def test_spaces_declare_their_default_recipe() -> None:
    assert default_recipe(search_spaces.get("ofa_mbv3")) == ("progressive_shrinking", "sandwich")
    assert default_recipe(search_spaces.get("bignas")) == ("single_stage", "sandwich")


# --- samplers ----------------------------------------------------------------------------------
def test_sandwich_epoch_lowers_loss_and_reports_progress(
    sandwich_run: tuple[SupernetTrainer, float, list[TrainingProgress]],
) -> None:
    trainer, before, reports = sandwich_run
    after = _label_loss(trainer, trainer.space.sample(np.random.default_rng(0), "max"))
    assert after < before - 0.3
    epoch = [r for r in reports if r.kind == "epoch"]
    assert len(epoch) == 1 and epoch[0].step == trainer.steps_per_epoch
    assert set(epoch[0].losses) == {"max", "min", "random"}
    assert epoch[0].max_val_acc is not None and epoch[0].min_val_acc is not None
    assert epoch[0].samples_per_s > 0 and any(r.kind == "step" for r in reports)


@pytest.mark.parametrize("sampler", ["uniform", "complexity_aware", "attentive"])
def test_one_epoch_of_each_sampler_lowers_the_loss(digits: DatasetSplits, sampler: str) -> None:
    space = search_spaces.get("bignas", preset="tiny")
    # one random subnet a step and two candidates scored for it: the samplers' logic at a
    # fraction of the default step's work
    config = TrainingConfig(
        epochs=1, sampler=sampler, num_random_subnets=1, attentive_candidates=2, **FAST
    )
    trainer = SupernetTrainer(space, digits, config)
    arch = space.sample(np.random.default_rng(0), "max")
    before = _label_loss(trainer, arch)
    trainer.fit()
    assert _label_loss(trainer, arch) < before - 0.3


def test_sandwich_step_runs_max_min_random_with_the_right_losses(small: DatasetSplits) -> None:
    space = search_spaces.get("bignas", preset="tiny")
    config = TrainingConfig(epochs=1, batch_size=32, num_random_subnets=2, **FAST)
    events: list[SubnetLoss] = []
    trainer = SupernetTrainer(space, small, config, subnet_hooks=[events.append])

    def stop_after_two_steps(event: SubnetLoss) -> None:
        if event.step == 1 and event.index == 3:
            trainer.request_stop()

    trainer.subnet_hooks.append(stop_after_two_steps)
    trainer.fit()
    assert [e.step for e in events] == [0] * 4 + [1] * 4
    for step in (0, 1):
        mine = [e for e in events if e.step == step]
        assert [e.role for e in mine] == ["max", "min", "random", "random"]
        assert [e.target for e in mine] == [
            "labels",
            "distillation",
            "distillation",
            "distillation",
        ]
        rng = np.random.default_rng(0)
        assert mine[0].arch == space.sample(rng, "max") and mine[1].arch == space.sample(rng, "min")
        # at initialisation a student's KL to the teacher is far below the label loss
        assert all(0 <= e.loss < mine[0].loss for e in mine[1:])


def test_complexity_aware_walk_covers_the_range_within_its_bound() -> None:
    space = search_spaces.get("bignas", preset="tiny")
    sampler = ComplexityAwareSampler(seed=3, num_random=2, buckets=6, max_step=0.35, tries=32)
    plans = [sampler.plan(space) for _ in range(60)]
    walk = sampler.metrics()
    macs = np.array(walk["walk_macs"])
    assert len(macs) == 120 and [s.role for s in plans[0]] == ["max", "min", "random", "random"]
    assert np.abs(np.diff(macs)).max() <= walk["walk_bound_macs"]
    assert set(walk["walk_buckets"]) == set(range(6))
    randoms = [s.arch for plan in plans for s in plan if s.role == "random"]
    assert macs.tolist() == space.complexity_batch(randoms)[0].tolist()


@pytest.mark.parametrize("mode", ["best", "worst"])
def test_attentive_picks_the_best_or_worst_scored_candidate(mode: str) -> None:
    space = search_spaces.get("bignas", preset="tiny")
    sampler = AttentiveSampler(seed=5, num_random=2, candidates=4, mode=mode, buckets=4)  # type: ignore[arg-type]
    pools: list[tuple[list, np.ndarray]] = []

    def scorer(archs: list) -> np.ndarray:  # any real per-arch score will do: here, the MACs
        losses = space.complexity_batch(archs)[0].astype(float)
        pools.append((archs, losses))
        return losses

    sampler.scorer = scorer
    randoms = [s.arch for _ in range(10) for s in sampler.plan(space) if s.role == "random"]
    assert len(pools) == len(randoms) == 20 and all(len(p) == 4 for p, _ in pools)
    pick = np.argmin if mode == "best" else np.argmax
    assert randoms == [archs[int(pick(losses))] for archs, losses in pools]
    walk = sampler.metrics()
    assert set(walk["attentive_targets"]) <= set(range(4)) and walk["attentive_loss_spread"] > 0


def test_complexity_aware_state_round_trips_exactly() -> None:
    space = search_spaces.get("bignas", preset="tiny")
    a = ComplexityAwareSampler(seed=1)
    for _ in range(5):
        a.plan(space)
    b = ComplexityAwareSampler(seed=99)
    b.load_state_dict(a.state_dict())
    assert [s.arch for s in a.plan(space)] == [s.arch for s in b.plan(space)]


# --- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", range(4, 41))
def test_default_phase_split_gives_every_phase_an_epoch_and_the_last_the_most(epochs: int) -> None:
    phases = build_phases(TrainingConfig(epochs=epochs), "progressive_shrinking")
    split = [p.epochs for p in phases]
    assert [p.name for p in phases] == ["full", "kernel", "depth", "expand"]
    assert sum(split) == epochs and min(split) >= 1
    assert split[-1] == max(split)
    if epochs % 6 == 0:  # the shares 1:1:1:3 exactly
        assert split == [epochs // 6] * 3 + [epochs // 2]


def test_split_epochs_needs_one_epoch_per_phase() -> None:
    assert split_epochs(4, [1, 1, 1, 3]) == [1, 1, 1, 1]
    assert split_epochs(12, [1, 1, 1, 3]) == [2, 2, 2, 6]
    assert split_epochs(7, [1, 1]) == [3, 4]  # a tie goes to the later phase
    with pytest.raises(ValueError, match="epochs: 4 phases need at least 4"):
        split_epochs(3, [1, 1, 1, 3])


def test_progressive_shrinking_pins_later_dimensions() -> None:
    space = search_spaces.get("ofa_mbv3", preset="tiny")
    largest = space.sample(np.random.default_rng(0), "max")
    kernel_phase = ShrunkSpace(space, ("depth", "expand", "width"))
    rng = np.random.default_rng(0)
    archs = [kernel_phase.sample(rng) for _ in range(20)]
    assert all(a.depth == largest.depth and a.expand == largest.expand for a in archs)
    assert len({a.kernel for a in archs}) > 1
    assert kernel_phase.sample(rng, "min").kernel == space.sample(rng, "min").kernel


# --- BN recalibration --------------------------------------------------------------------------
def test_bn_recalibration_changes_statistics_and_helps_a_shrunk_subnet(
    sandwich_run: tuple[SupernetTrainer, float, list[TrainingProgress]],
) -> None:
    trainer, _, _ = sandwich_run
    space, supernet = trainer.space, trainer.supernet
    smallest = space.sample(np.random.default_rng(0), "min")
    # the shared statistics a subnet would use without recalibration: a mixture of all subnets
    trainer.train_step(*next(trainer.train_batches.epoch(0)), lr=0.0)
    supernet.set_active(smallest)
    stale = [bn.running_mean.clone() for bn in batch_norms(supernet)]
    stale_acc = accuracy(supernet, trainer.val_batches, smallest.resolution)
    batches = trainer.calibration_batches()
    recalibrate_bn(supernet, smallest, batches, len(batches))
    fresh = [bn.running_mean for bn in batch_norms(supernet)]
    assert any(not torch.allclose(a, b) for a, b in zip(stale, fresh, strict=True))
    assert accuracy(supernet, trainer.val_batches, smallest.resolution) > stale_acc + 5
    assert all(bn.momentum is not None for bn in batch_norms(supernet))  # restored


# --- checkpoints and resume --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("space_name", "overrides", "stop_step", "workers"),
    [
        ("bignas", {"epochs": 2, "sampler": "complexity_aware", "drop_connect": 0.2}, 13, 1),
        ("ofa_mbv3", {"epochs": 4, "schedule": "progressive_shrinking"}, 31, 0),
    ],
    ids=["single_stage-complexity_aware", "progressive_shrinking-sandwich"],
)
def test_resume_after_sigterm_matches_an_uninterrupted_run(
    small_augmented: DatasetSplits,
    tmp_path: Path,
    space_name: str,
    overrides: dict,
    stop_step: int,
    workers: int,
) -> None:
    """Augmented batches, read by a DataLoader worker process in the first case."""
    spec = small_augmented.spec.model_copy(update={"num_workers": workers})
    small = dataclasses.replace(small_augmented, spec=spec)
    space = search_spaces.get(space_name, preset="tiny")
    config = TrainingConfig(batch_size=32, dropout=0.2, **FAST, **overrides)
    full = SupernetTrainer(space, small, config).fit()

    first = SupernetTrainer(space, small, config, checkpoint_dir=tmp_path)

    def sigterm(event: SubnetLoss) -> None:
        if event.step == stop_step and event.index == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    first.subnet_hooks.append(sigterm)
    part = first.fit()
    assert part.interrupted and part.steps == stop_step + 1
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)  # weights_only=True inside
    second = SupernetTrainer(space, small, config, checkpoint_dir=tmp_path)
    second.load_state_dict(state)
    rest = second.fit()
    assert not rest.interrupted and rest.steps == full.steps
    resumed = part.step_losses + rest.step_losses
    np.testing.assert_allclose(resumed, full.step_losses, rtol=0, atol=1e-6)
    assert load_checkpoint(tmp_path)["epoch"] == config.epochs


# --- CLI ---------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    from service.cli import app

    return app


def test_cli_trains_locally_with_progress_and_resumes(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "space: bignas\npreset: tiny\n"
        "dataset: {kind: synthetic, num_samples: 200, resolution: 24}\n"
        "training: {epochs: 1, sampler: uniform, bn_recalibration_batches: 1}\n"
        f"output_dir: {tmp_path / 'run'}\n"
    )
    result = CliRunner().invoke(_cli(), ["train", str(job), "--local"])
    assert result.exit_code == 0, result.output
    assert "epoch 1: max subnet" in result.output and "done:" in result.output
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    again = CliRunner().invoke(_cli(), ["train", str(job), "--local"])  # already finished
    assert again.exit_code == 0, again.output


def test_cli_rejects_a_bad_job_naming_the_field(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("space: bignas\ntraining: {lr: -1}\n")
    result = CliRunner().invoke(_cli(), ["train", str(job), "--local"])
    assert result.exit_code == 2
    assert "training.lr" in result.output
