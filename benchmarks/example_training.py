"""Does every shipped example train its supernet? One row per ``examples/digits-*.yaml``.

Trains the example's tiny supernet on digits exactly as its ``training:`` section says (the
space's default recipe for everything it leaves out), then prints the val top-1 of the max and
min subnets after BN recalibration (as the job measures them), of a few random subnets, the
wall time and the machine load (``os.getloadavg``) when the row finished. A supernet trained
to chance shows up here long before a search ranks its subnets.

    python -m benchmarks.example_training --threads 1
    python -m benchmarks.example_training --spaces nasnet proxyless --epochs 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.training import SupernetTrainer, TrainingConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_config(space: str, epochs: int | None = None) -> TrainingConfig:
    """The ``training:`` section of the digits example of ``space``, optionally shortened."""
    jobs = [yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("digits-*.yaml"))]
    section = dict(next(job for job in jobs if job["space"] == space)["training"])
    if epochs is not None:
        section["epochs"] = epochs
    return TrainingConfig.model_validate(section)


def train_example(
    space_name: str, config: TrainingConfig, *, random_subnets: int, data: Any = None
) -> dict:
    """Train on ``data`` (digits by default), then measure max, min and ``random_subnets``
    random subnets on val; the random archs depend only on the space, so every recipe and
    seed is measured on the same ones."""
    data = data if data is not None else load_dataset(DatasetSpec(kind="digits"))
    space = search_spaces.get(
        space_name, preset="tiny", num_classes=data.num_classes, in_channels=data.in_channels
    )
    started = time.perf_counter()
    trainer = SupernetTrainer(space, data, config)
    trainer.fit()
    seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    randoms = [trainer.evaluate(space.sample(rng, "random")) for _ in range(random_subnets)]
    return {
        "space": space_name,
        "epochs": config.epochs,
        "max": trainer.evaluate(space.sample(rng, "max")),
        "min": trainer.evaluate(space.sample(rng, "min")),
        "random_median": float(np.median(randoms)) if randoms else float("nan"),
        "randoms": randoms,
        "sampler": trainer.sampler.name,
        "seconds": seconds,
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=list(search_spaces.names()))
    parser.add_argument("--epochs", type=int, default=None, help="Override the examples'.")
    parser.add_argument("--random-subnets", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| example | epochs | max % | min % | random median % | train s | load (1 min) |")
    print("|---|---|---|---|---|---|---|")
    for space in args.spaces:
        row = train_example(
            space, example_config(space, args.epochs), random_subnets=args.random_subnets
        )
        print(
            f"| digits-{space} | {row['epochs']} | {row['max']:.1f} | {row['min']:.1f} "
            f"| {row['random_median']:.1f} | {row['seconds']:.0f} | {row['load']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
