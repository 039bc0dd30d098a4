"""Do random subnets of a candidate-op space train, or only the max and min? Sampler vs sampler.

Spaces whose layers choose among separate candidate ops (ProxylessNAS, NASNet) trained with
the sandwich rule learn the max and min paths while random subnets sit near chance: downstream
layers only ever see the max and min candidates' outputs. This trains the tiny supernet on
digits with the example's ``training:`` section (``examples/digits-<space>.yaml``) under each
recipe and prints, per (space, recipe, seed), the val top-1 after BN recalibration of the max
and min subnets and the median and range of ``--random-subnets`` random subnets (drawn with a
fixed generator, the same archs for every recipe), the training wall time and the 1-minute load
(``os.getloadavg``) when the row finished.

Recipes: ``example`` is the yaml as shipped (today's default for the space); the others
override its sampler (and optionally its epochs or lr):

    python -m benchmarks.candidate_fairness --spaces proxyless
    python -m benchmarks.candidate_fairness --spaces nasnet --recipes sandwich fair \
        --set fair:epochs=2 --seeds 0 1
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from benchmarks.example_training import example_config, train_example
from nas.data import DatasetSpec, load_dataset
from nas.training import TrainingConfig

#: recipe name -> overrides of the example's ``training:`` section.
RECIPES: dict[str, dict[str, Any]] = {
    "example": {},
    "sandwich": {"sampler": "sandwich"},
    "fair": {"sampler": "fair"},
    "fair_distill": {"sampler": "fair_distill"},
    "uniform": {"sampler": "uniform"},
}


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``recipe:key=value`` items (values parsed as int, float, else str) by recipe."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        recipe, _, assignment = item.partition(":")
        key, _, raw = assignment.partition("=")
        if not key or not raw:
            raise SystemExit(f"--set: expected recipe:key=value, got {item!r}")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                pass
        out.setdefault(recipe, {})[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["proxyless", "nasnet"])
    parser.add_argument("--recipes", nargs="+", default=["example", "fair", "fair_distill"])
    parser.add_argument("--set", nargs="*", default=[], help="recipe:key=value overrides")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--random-subnets", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    data = load_dataset(DatasetSpec(kind="digits"))
    print(
        "| space | recipe | sampler | epochs | seed | max % | min % | random median % "
        "| random range % | train s | load (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for space in args.spaces:
        for recipe in args.recipes:
            for seed in args.seeds:
                base = example_config(space).model_dump(exclude_unset=True)
                section = {**base, **RECIPES.get(recipe, {}), **overrides.get(recipe, {})}
                section["seed"] = seed
                config = TrainingConfig.model_validate(section)
                row = train_example(space, config, random_subnets=args.random_subnets, data=data)
                low, high = min(row["randoms"]), max(row["randoms"])
                print(
                    f"| {space} | {recipe} | {row['sampler']} | {config.epochs} | {seed} "
                    f"| {row['max']:.1f} | {row['min']:.1f} "
                    f"| {float(np.median(row['randoms'])):.1f} | {low:.1f}-{high:.1f} "
                    f"| {row['seconds']:.0f} | {row['load']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
