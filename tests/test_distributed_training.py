"""Data-parallel supernet training on Ray Train: identical workers, same accuracy, restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.training import CHECKPOINT_NAME, SupernetTrainer, TrainingConfig, load_checkpoint
from workers.training import TrainJob, train_distributed

DATASET = DatasetSpec(kind="synthetic", num_samples=1000, resolution=24, val_fraction=0.3)
CONFIG = TrainingConfig(
    epochs=5, batch_size=64, sampler="uniform", warmup_epochs=0.0, bn_recalibration_batches=2
)


@pytest.fixture(scope="module")
def two_worker_run(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Two gloo workers; one injected crash after epoch 1 that FailureConfig recovers from."""
    output = tmp_path_factory.mktemp("two-workers")
    job = TrainJob(
        space="bignas", dataset=DATASET, training=CONFIG, output_dir=output, num_workers=2
    )
    events: list[dict[str, Any]] = []
    metrics = train_distributed(
        job,
        progress=events.append,
        extra_loop_config={"check_weights_agree": True, "inject_failure_after_epoch": 1},
    )
    return metrics, events, output


def test_every_worker_holds_identical_weights_after_every_step(
    two_worker_run: tuple[dict[str, Any], list[dict[str, Any]], Path],
) -> None:
    metrics, _, _ = two_worker_run
    assert metrics["weights_identical"] is True
    assert metrics["epoch"] == CONFIG.epochs


def test_two_workers_reach_the_accuracy_of_one(
    two_worker_run: tuple[dict[str, Any], list[dict[str, Any]], Path],
) -> None:
    metrics, _, _ = two_worker_run
    torch.set_num_threads(1)
    data = load_dataset(DATASET)
    space = search_spaces.get("bignas", preset="tiny")
    single = SupernetTrainer(space, data, CONFIG).fit().history[-1]
    assert single.max_val_acc is not None and single.min_val_acc is not None
    assert single.max_val_acc > 90
    assert abs(metrics["max_val_acc"] - single.max_val_acc) <= 1.0
    assert abs(metrics["min_val_acc"] - single.min_val_acc) <= 1.0


def test_failure_restarts_from_the_latest_checkpoint(
    two_worker_run: tuple[dict[str, Any], list[dict[str, Any]], Path],
) -> None:
    _, events, output = two_worker_run
    assert (output / "injected_failure").exists()
    epochs = [e["epoch"] for e in events if e["kind"] == "epoch"]
    assert epochs == [1, 2, 3, 4, 5]  # epoch 1 was not trained twice: the restart resumed after it
    assert load_checkpoint(output / CHECKPOINT_NAME)["epoch"] == CONFIG.epochs
