"""Stage two: the chosen subnets fine-tuned from their inherited weights (``nas.training.finetune``
alone, then the ``finetuning`` stage on a real local Ray Tune with Optuna and ASHA) on a job
trained, searched and measured here (tiny ofa_mbv3 on digits)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _finished_job import BOARD

import search_spaces
from nas.data import DatasetSpec, load_dataset, resize_batch
from nas.data.loading import EvalBatches, TrainBatches
from nas.training.bn import accuracy
from nas.training.finetune import (
    FinetuneRecipe,
    RecipeSpace,
    finetune_subnet,
    recipe_optimizer,
    recipe_space,
)
from workers.events import ArtifactWritten, LogLine, Metrics, ResultsWritten
from workers.finetuning import (
    chosen_subnets,
    experiment_path,
    load_finetuned,
    record_path,
    run_finetuning,
    weights_path,
)
from workers.jobs import EventLog, StageContext
from workers.results import RESULTS_NAME, FrontResult, JobResults, read_results, write_results
from workers.spec import FinetuneSettings, JobRequest
from workers.trained import load_request

pytestmark = pytest.mark.usefixtures("one_thread")

#: The fine-tuning trials' train split: a stratified subset (val and holdout are the job's).
DATASET = DatasetSpec(kind="digits", max_train_images=480)
RECIPE = FinetuneRecipe(lr=0.05, weight_decay=1e-5, epochs=2, label_smoothing=0.1, kd_weight=0.0)


# --- the algorithm alone -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_dataset(DatasetSpec(kind="digits", max_train_images=640))


def _fresh_subnet(digits: Any) -> tuple[torch.nn.Module, int]:
    """The smallest subnet of a freshly initialised supernet (seeded): far from trained."""
    space = search_spaces.get(
        "ofa_mbv3", preset="tiny", num_classes=digits.num_classes, in_channels=digits.in_channels
    )
    torch.manual_seed(0)
    arch = space.reference_archs()["min"]
    return space.extract(space.build_supernet(), arch), int(arch.resolution)


def _train_loss(model: torch.nn.Module, digits: Any, resolution: int) -> float:
    model.eval()
    with torch.no_grad():
        losses = [
            F.cross_entropy(model(resize_batch(x, resolution)), y)
            for x, y in EvalBatches(digits.train)
        ]
    return float(torch.stack(losses).mean())


def test_finetuning_lowers_the_loss_and_raises_accuracy(digits: Any) -> None:
    model, resolution = _fresh_subnet(digits)
    train = TrainBatches(digits.train, batch_size=32, seed=0)
    before = (
        _train_loss(model, digits, resolution),
        accuracy(model, EvalBatches(digits.val), resolution),
    )
    recipe = RECIPE.model_copy(update={"epochs": 3, "lr": 0.1})
    outcome = finetune_subnet(model, train, recipe, resolution=resolution)
    after = (
        _train_loss(model, digits, resolution),
        accuracy(model, EvalBatches(digits.val), resolution),
    )
    assert outcome.epochs == 3 and not outcome.stopped and len(outcome.losses) == 3
    assert after[0] < 0.7 * before[0], (before, after)
    assert after[1] > before[1] + 20.0, (before, after)


def test_on_epoch_false_stops_and_a_resumed_run_matches_an_uninterrupted_one(
    digits: Any,
) -> None:
    train = TrainBatches(digits.train, batch_size=32, seed=0)
    whole, resolution = _fresh_subnet(digits)
    finetune_subnet(whole, train, RECIPE, resolution=resolution, seed=3)

    cut, _ = _fresh_subnet(digits)
    optimizer = recipe_optimizer(cut, RECIPE)
    seen: list[int] = []

    def stop_after_first(epoch: int, model: torch.nn.Module) -> bool:
        seen.append(epoch)
        return False

    outcome = finetune_subnet(
        cut,
        train,
        RECIPE,
        resolution=resolution,
        on_epoch=stop_after_first,
        optimizer=optimizer,
        seed=3,
    )
    assert seen == [1] and outcome.epochs == 1 and outcome.stopped
    # what a Tune checkpoint holds: the weights, the optimizer's state, the epoch
    saved: dict[str, Any] = {
        "model": cut.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 1,
    }
    resumed, _ = _fresh_subnet(digits)
    resumed.load_state_dict(saved["model"])
    optimizer = recipe_optimizer(resumed, RECIPE)
    optimizer.load_state_dict(saved["optimizer"])
    finetune_subnet(
        resumed,
        train,
        RECIPE,
        resolution=resolution,
        optimizer=optimizer,
        start_epoch=saved["epoch"],
        seed=3,
    )
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_recipe_that_distils_needs_a_teacher_and_bad_bounds_are_named(digits: Any) -> None:
    model, resolution = _fresh_subnet(digits)
    train = TrainBatches(digits.train, batch_size=32, seed=0)
    with pytest.raises(ValueError, match="teacher"):
        finetune_subnet(
            model, train, RECIPE.model_copy(update={"kd_weight": 0.5}), resolution=resolution
        )
    with pytest.raises(ValueError, match="lr"):
        RecipeSpace(lr=(0.0, 0.1))
    with pytest.raises(ValueError, match="label_smoothing"):
        RecipeSpace(label_smoothing=(0.0, 0.9))
    assert recipe_space(3, distill=False).kd_weight == (0.0, 0.0)
    assert recipe_space(3).epochs == (1, 3)


# --- the stage on Ray Tune -----------------------------------------------------------------------


@dataclass
class Job:
    request: JobRequest
    results: JobResults


def _stage(request: JobRequest, stage: Any, run: Callable[..., None], **kwargs: Any) -> list[Any]:
    """Run one stage the way ``run_job`` does; returns its events."""
    events = EventLog()
    run(StageContext(request, stage, events, (0.0, 1.0)), **kwargs)
    return events.after(0)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, ray_local: Any, finished_job: Any) -> Job:
    """The session's trained, searched and measured job (``tests/_finished_job.py``) copied as
    a job of its own with one front: the registered device's (a MACs budget: nothing is
    timed), its stage-two figures cleared, fine-tuning 2 subnets x 2 recipes on a 480-image
    stratified subset of the train split (val and holdout are the job's)."""
    root = tmp_path_factory.mktemp("finetune-job")
    (root / "data").mkdir()
    source = finished_job.request
    request = source.model_copy(
        update={
            "devices": [BOARD],
            "search": source.search.model_copy(
                update={"budgets": {BOARD: source.search.budgets[BOARD]}}
            ),
            "dataset": DATASET,
            "finetune": FinetuneSettings(
                subnets=2, samples=2, max_epochs=2, grace_epochs=1, seed=0
            ),
            "artifact_dir": root / "var",
            "data_root": root / "data",
        }
    )
    for part in ("supernet", "predictor", "tables"):
        shutil.copytree(source.job_dir / part, request.job_dir / part)
    results = finished_job.results
    one_front = results.model_copy(
        update={
            "fronts": [f for f in results.fronts if f.device == BOARD],
            "subnets": [s.model_copy(update={"finetuned": None}) for s in results.subnets],
        }
    )
    write_results(one_front, request.job_dir / RESULTS_NAME)
    return Job(request, read_results(request.job_dir / RESULTS_NAME))


@pytest.fixture(scope="module")
def finetuned(job: Job) -> list[Any]:
    """The finetuning stage, 2 subnets x 2 recipes; its events."""
    (front,) = job.results.fronts
    assert len(front.members) >= 2, "the front is too short to choose 2 subnets"
    return _stage(job.request, "finetuning", run_finetuning)


def test_two_subnets_are_finetuned_through_ray_tune_and_both_accuracies_kept(
    job: Job, finetuned: list[Any]
) -> None:
    job_dir = job.request.job_dir
    after = read_results(job_dir / RESULTS_NAME)  # validates again
    chosen = chosen_subnets(job.results, 2)
    assert [s.arch_id for s in chosen] == job.results.fronts[0].members[:2]
    for before in job.results.subnets:
        subnet = after.subnet(before.arch_id)
        assert subnet.measured_accuracy == before.measured_accuracy  # inherited, unchanged
        if before.arch_id not in {s.arch_id for s in chosen}:
            assert subnet.finetuned is None
            continue
        tuned = subnet.finetuned
        assert tuned is not None and tuned.trials == 2
        assert 0.0 < tuned.accuracy <= 100.0 and 1 <= tuned.epochs <= 2
        assert tuned.weights == f"finetune/{before.arch_id}/weights.pt"
        assert (job_dir / tuned.weights).exists()
        assert set(tuned.recipe) == set(FinetuneRecipe.model_fields)
        # one Ray Tune experiment per subnet, one trial directory per recipe
        trials = [p for p in experiment_path(job_dir, before.arch_id).iterdir() if p.is_dir()]
        assert len(trials) == 2
    (announced,) = [e for e in finetuned if isinstance(e, ResultsWritten)]
    assert announced.path == "jobs/1/results.json"
    artifacts = [e for e in finetuned if isinstance(e, ArtifactWritten)]
    assert {(a.kind, a.arch_id) for a in artifacts} == {
        ("finetuned_weights", s.arch_id) for s in chosen
    }
    points = {e.key: e.data for e in finetuned if isinstance(e, Metrics)}
    for subnet in chosen:
        data = points[f"finetuning/{subnet.arch_id}"]
        assert data["inherited_accuracy"] == subnet.measured_accuracy
        tuned = after.subnet(subnet.arch_id).finetuned
        assert tuned is not None and data["finetuned_accuracy"] == tuned.accuracy


def test_each_subnet_is_chosen_once_across_devices(job: Job) -> None:
    (front,) = job.results.fronts
    twin = FrontResult(**{**front.model_dump(), "device": "twin"})
    both = job.results.model_copy(update={"fronts": [front, twin]})
    assert [s.arch_id for s in chosen_subnets(both, 2)] == front.members[:2]
    assert [s.arch_id for s in chosen_subnets(both, 1)] == front.members[:1]


def test_the_finetuned_module_differs_from_the_inherited_one_and_scores_what_was_stored(
    job: Job, finetuned: list[Any]
) -> None:
    trained = load_request(job.request)
    results = read_results(job.request.job_dir / RESULTS_NAME)
    subnet = chosen_subnets(results, 2)[0]
    arch = trained.space.arch_from_dict(subnet.arch)
    tuned = load_finetuned(job.request.job_dir, trained, arch)
    assert tuned is not None and not tuned.training
    inherited = trained.extract(arch)
    x = next(iter(EvalBatches(trained.data.val)))[0][:16]
    with torch.no_grad():
        assert not torch.allclose(tuned(x), inherited(x))
    val = accuracy(tuned, EvalBatches(trained.data.val), arch.resolution)
    assert subnet.finetuned is not None
    assert abs(val - subnet.finetuned.accuracy) < 1e-6
    unchosen = [s for s in results.subnets if s.finetuned is None]
    assert (
        load_finetuned(job.request.job_dir, trained, trained.space.arch_from_dict(unchosen[0].arch))
        is None
    )


def _trial_runs(experiment: Path) -> dict[str, list[str]]:
    """Per trial directory: Tune's log of its results (one line per epoch, with a timestamp)
    and its checkpoints."""
    return {
        p.name: [(p / "result.json").read_text(), *sorted(c.name for c in p.glob("checkpoint_*"))]
        for p in experiment.iterdir()
        if p.is_dir()
    }


def test_an_interrupted_stage_resumes_without_rerunning_finished_trials(
    job: Job, finetuned: list[Any]
) -> None:
    job_dir = job.request.job_dir
    first, second = chosen_subnets(job.results, 2)
    record = read_results(job_dir / RESULTS_NAME).subnet(first.arch_id).finetuned
    weights = weights_path(job_dir, first.arch_id).read_bytes()
    runs = _trial_runs(experiment_path(job_dir, first.arch_id))
    # the attempt died after the subnet's trials finished, before its files were written
    weights_path(job_dir, first.arch_id).unlink()
    record_path(job_dir, first.arch_id).unlink()
    events = _stage(job.request, "finetuning", run_finetuning)
    logs = [e.message for e in events if isinstance(e, LogLine)]
    assert any(f"{first.arch_id}: restoring" in m for m in logs), logs
    assert any(f"{second.arch_id}: fine-tuned by an earlier attempt" in m for m in logs), logs
    assert _trial_runs(experiment_path(job_dir, first.arch_id)) == runs  # nothing re-ran
    assert weights_path(job_dir, first.arch_id).read_bytes() == weights
    assert read_results(job_dir / RESULTS_NAME).subnet(first.arch_id).finetuned == record


def test_asha_stops_trials_whose_recipe_trails_after_the_grace_epoch(job: Job) -> None:
    """4 recipes of 3 epochs each, learning rates log-uniform in [1e-3, 10] (the upper part
    wrecks the inherited weights): ASHA's one rung, at epoch 1, stops the trials that trail the
    ones that reached it before them, and a stopped trial counts as stopped early."""
    settings = FinetuneSettings(
        subnets=1, samples=4, max_epochs=3, grace_epochs=1, distill=False, seed=1
    )
    request = job.request.model_copy(update={"job_id": 2, "finetune": settings})
    request.job_dir.mkdir(parents=True)
    shutil.copytree(job.request.job_dir / "supernet", request.job_dir / "supernet")
    shutil.copy(job.request.job_dir / RESULTS_NAME, request.job_dir / RESULTS_NAME)
    recipes = RecipeSpace(lr=(1e-3, 10.0), epochs=(3, 3), kd_weight=(0.0, 0.0))
    _stage(request, "finetuning", run_finetuning, recipes=recipes)
    (subnet,) = chosen_subnets(job.results, 1)
    tuned = read_results(request.job_dir / RESULTS_NAME).subnet(subnet.arch_id).finetuned
    assert tuned is not None and tuned.trials == 4
    assert tuned.stopped_early >= 1
    assert tuned.recipe["lr"] < 1.0  # a destructive learning rate never wins
    runs = _trial_runs(experiment_path(request.job_dir, subnet.arch_id))
    epochs = sorted(len(log.splitlines()) for log, *_ in runs.values())
    assert len(epochs) == 4 and epochs[0] == 1 and epochs[-1] == 3  # stopped at the rung
    assert np.isclose(tuned.recipe["kd_weight"], 0.0)


def test_a_job_without_finetune_settings_skips_the_stage(job: Job) -> None:
    request = job.request.model_copy(update={"finetune": None})
    events = _stage(request, "finetuning", run_finetuning)
    assert [e.message for e in events] == [
        "finetuning skipped: the job asks for none (finetune is null)"
    ]
