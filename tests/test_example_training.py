"""Every space's supernet learns the shipped digits with its example's recipe (issue 26).

A short version of each ``examples/digits-*.yaml`` training: its ``training:`` section on the
tiny preset, cut to SHORT epochs over a stratified subset of SHORT train images (20 steps; 40
for NASNet, whose example trains two subnets a step and whose min learns last; so that the
five spaces train in well under 3 minutes on 2 cores) with a quarter-epoch warmup, then the
max and min subnets measured on the whole val split after BN recalibration, as the job
measures them. A supernet that trains to chance (about 10%) while the job "succeeds" fails
here; the full-length figures are printed by ``benchmarks/example_training.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.training import SupernetTrainer, TrainingConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: space -> (epochs, train images, lowest max-subnet and min-subnet val top-1 in %). The floors
#: sit well below what the short run reaches and far above chance (10%); progressive shrinking
#: needs an epoch per phase.
SHORT: dict[str, tuple[int, int, float, float]] = {
    "bignas": (1, 640, 30.0, 20.0),
    "nasnet": (2, 640, 30.0, 20.0),
    "ofa_mbv3": (4, 160, 30.0, 20.0),
    "proxyless": (1, 640, 30.0, 20.0),
    "single_path": (1, 640, 30.0, 20.0),
}


def short_config(space: str, epochs: int) -> TrainingConfig:
    """The example's ``training:`` section, cut to ``epochs`` with a quarter-epoch warmup."""
    jobs = [yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("digits-*.yaml"))]
    section = next(job for job in jobs if job["space"] == space)["training"]
    return TrainingConfig.model_validate({**section, "epochs": epochs, "warmup_epochs": 0.25})


pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_space_has_a_short_version() -> None:
    assert set(SHORT) == set(search_spaces.names())


@pytest.mark.parametrize("space_name", sorted(SHORT))
def test_example_recipe_trains_max_and_min_subnets(space_name: str) -> None:
    epochs, images, max_floor, min_floor = SHORT[space_name]
    config = short_config(space_name, epochs)
    space = search_spaces.get(space_name, preset="tiny", num_classes=10, in_channels=3)
    data = load_dataset(DatasetSpec(kind="digits", max_train_images=images))
    trainer = SupernetTrainer(space, data, config)
    trainer.fit()
    rng = np.random.default_rng(0)
    max_acc = trainer.evaluate(space.sample(rng, "max"))
    min_acc = trainer.evaluate(space.sample(rng, "min"))
    assert max_acc >= max_floor, f"max subnet {max_acc:.1f}% < {max_floor}%"
    assert min_acc >= min_floor, f"min subnet {min_acc:.1f}% < {min_floor}%"
