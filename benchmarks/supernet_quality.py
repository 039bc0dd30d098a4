"""Supernet quality on digits: are subnets taken from the supernet as good as trained alone?

For each space (tiny preset) it trains the supernet with the space's default recipe, then
prints: wall time; val accuracy of the max, min and 8 random subnets (BN recalibrated);
the same archs trained standalone for the same epochs (mean over ``--reference-seeds``
training seeds); the gap; Kendall tau between the supernet and standalone rankings over
``--rank-archs`` archs; the other samplers' max/min accuracy; and the throughput of a sandwich
step against the four subnets' standalone steps.

The standalone ranking is itself noisy: the same arch trained with another seed scores
differently, so the benchmark also prints the tau between the standalone rankings of two
seeds. No ranking of the archs can be expected to agree with the reference better than the
reference agrees with itself; that tau is the ceiling the supernet's tau is read against.

    python -m benchmarks.supernet_quality --space bignas --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

import search_spaces
from nas.data import DatasetSpec, DatasetSplits, load_dataset, resize_batch
from nas.training import ArchSampler, Subnet, SupernetTrainer, TrainingConfig, default_recipe

#: The demo budget: what trains a tiny supernet on digits in about 3 minutes on 2 CPU cores.
DEMO_EPOCHS = 12


class FixedArchSampler(ArchSampler):
    """Always the same arch, as the "largest" subnet: standalone training of one network."""

    name = "fixed"

    def __init__(self, arch: Any) -> None:
        super().__init__(seed=0)
        self.arch = arch

    def plan(self, space: Any) -> list[Subnet]:
        return [Subnet("max", self.arch)]


@dataclass
class SpaceReport:
    space: str
    seconds: float
    max_acc: float
    min_acc: float
    supernet_accs: list[float]
    standalone_accs: list[float]
    tau: float
    reference_tau: float | None
    reference_seeds: int
    reference_spread: tuple[float, float | None]
    """Std (points) of the standalone accuracy across archs, and across seeds of one arch."""
    sampler_accs: dict[str, tuple[float, float, float]]
    throughput_ratio: float


def train_supernet(
    space: Any, data: DatasetSplits, config: TrainingConfig
) -> tuple[SupernetTrainer, float]:
    trainer = SupernetTrainer(space, data, config)
    started = time.perf_counter()
    trainer.fit()
    return trainer, time.perf_counter() - started


def log(message: str) -> None:
    """Progress on stderr, so that a long run shows where it is and the table stays clean."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def standalone_accuracy(
    space: Any, data: DatasetSplits, config: TrainingConfig, arch: Any, seed: int = 0
) -> float:
    """Train ``arch`` alone (its own fresh weights, ``seed``) with the same recipe and epochs."""
    # no per-epoch max/min evaluations: only the final accuracy of ``arch`` is used
    single = config.model_copy(
        update={
            "schedule": "single_stage",
            "phases": None,
            "eval_every": config.epochs,
            "seed": seed,
        }
    )
    trainer = SupernetTrainer(space, data, single)
    trainer.sampler = FixedArchSampler(arch)
    trainer.fit()
    return trainer.evaluate(arch)


def throughput_ratio(trainer: SupernetTrainer, repeats: int = 5) -> float:
    """Seconds of one sandwich step over the sum of its four subnets' standalone steps."""
    space = trainer.space
    images, labels = next(trainer.train_batches.epoch(0))
    plan = trainer.sampler.plan(space)
    static = [space.extract(trainer.supernet, s.arch).train() for s in plan]

    class Replay(ArchSampler):
        name, distill = "replay", True

        def plan(self, space: Any) -> list[Subnet]:
            return plan

    saved, trainer.sampler = trainer.sampler, Replay(seed=0)
    sandwich, alone = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        trainer.train_step(images, labels, lr=0.0)
        sandwich.append(time.perf_counter() - started)
        total = 0.0
        for model, subnet in zip(static, plan, strict=True):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, nesterov=True)
            started = time.perf_counter()
            optimizer.zero_grad()
            x = resize_batch(images, subnet.arch.resolution)
            F.cross_entropy(model(x), labels).backward()
            optimizer.step()
            total += time.perf_counter() - started
        alone.append(total)
    trainer.sampler = saved
    return statistics.median(sandwich) / statistics.median(alone)


def mean_pairwise_tau(rankings: list[list[float]]) -> float | None:
    """Mean Kendall tau over every pair of ``rankings`` (None for fewer than two)."""
    taus = [
        float(kendalltau(a, b).statistic) for i, a in enumerate(rankings) for b in rankings[i + 1 :]
    ]
    return float(np.mean(taus)) if taus else None


def spread(runs: list[list[float]]) -> tuple[float, float | None]:
    """Std of the per-arch standalone mean across archs; pooled std across seeds of an arch."""
    table = np.asarray(runs)
    across_archs = float(table.mean(axis=0).std(ddof=1))
    if len(runs) < 2:
        return across_archs, None
    return across_archs, float(np.sqrt(table.var(axis=0, ddof=1).mean()))


def run_space(
    name: str,
    data: DatasetSplits,
    *,
    epochs: int,
    rank_archs: int,
    reference_seeds: int,
    samplers: list[str],
    schedule: str | None = None,
) -> SpaceReport:
    space = search_spaces.get(name, preset="tiny")
    default_schedule, sampler = default_recipe(space)
    schedule = schedule or default_schedule
    config = TrainingConfig(epochs=epochs, schedule=schedule, sampler=sampler)
    trainer, seconds = train_supernet(space, data, config)
    log(f"{name}: supernet ({schedule}, {sampler}) trained in {seconds:.0f} s")
    rng = np.random.default_rng(2024)
    archs = [space.sample(rng, "random") for _ in range(rank_archs)]
    biggest, smallest = space.sample(rng, "max"), space.sample(rng, "min")
    supernet_accs = [trainer.evaluate(a) for a in archs]
    runs: list[list[float]] = []  # runs[seed][arch]
    for seed in range(reference_seeds):
        runs.append([])
        for i, arch in enumerate(archs):
            runs[-1].append(standalone_accuracy(space, data, config, arch, seed))
            log(f"{name}: standalone seed {seed}, {i + 1}/{len(archs)}: {runs[-1][-1]:.2f}%")
    standalone_accs = [float(np.mean(column)) for column in zip(*runs, strict=True)]
    tau = float(kendalltau(supernet_accs, standalone_accs).statistic)
    sampler_accs = {sampler: (seconds, trainer.evaluate(biggest), trainer.evaluate(smallest))}
    for other in samplers:
        if other == sampler:
            continue
        variant = config.model_copy(update={"sampler": other})
        other_trainer, other_seconds = train_supernet(space, data, variant)
        log(f"{name}: sampler {other} trained in {other_seconds:.0f} s")
        sampler_accs[other] = (
            other_seconds,
            other_trainer.evaluate(biggest),
            other_trainer.evaluate(smallest),
        )
    return SpaceReport(
        space=name,
        seconds=seconds,
        max_acc=sampler_accs[sampler][1],
        min_acc=sampler_accs[sampler][2],
        supernet_accs=supernet_accs,
        standalone_accs=standalone_accs,
        tau=tau,
        reference_tau=mean_pairwise_tau(runs),
        reference_seeds=reference_seeds,
        reference_spread=spread(runs),
        sampler_accs=sampler_accs,
        throughput_ratio=throughput_ratio(trainer),
    )


def print_report(report: SpaceReport, shown: int = 8) -> None:
    print(f"\n== {report.space} (tiny) on digits ==")
    print(f"supernet training wall time: {report.seconds:.0f} s")
    print(f"max subnet: {report.max_acc:.2f}%   min subnet: {report.min_acc:.2f}%")
    print(f"standalone: mean of {report.reference_seeds} training seed(s) per arch")
    print(f"{'arch':>4} {'supernet':>9} {'standalone':>11} {'gap':>6}")
    gaps = []
    for i, (a, b) in enumerate(
        zip(report.supernet_accs[:shown], report.standalone_accs[:shown], strict=True)
    ):
        gaps.append(b - a)
        print(f"{i:>4} {a:>8.2f}% {b:>10.2f}% {b - a:>+6.2f}")
    print(f"mean gap (standalone - supernet): {np.mean(gaps):+.2f} points")
    print(f"Kendall tau over {len(report.supernet_accs)} archs: {report.tau:.3f}")
    if report.reference_tau is not None:
        ceiling = report.reference_tau
        print(f"  standalone seed vs seed (the reference's own agreement): {ceiling:.3f}")
    archs_std, seeds_std = report.reference_spread
    seeds_text = "" if seeds_std is None else f", across seeds of one arch {seeds_std:.2f}"
    print(f"  standalone accuracy std: across archs {archs_std:.2f} points{seeds_text}")
    for sampler, (seconds, high, low) in report.sampler_accs.items():
        print(f"sampler {sampler:>17}: max {high:6.2f}%  min {low:6.2f}%  ({seconds:.0f} s)")
    print(f"sandwich step / sum of 4 standalone steps (time ratio): {report.throughput_ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", action="append", choices=search_spaces.names())
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--rank-archs", type=int, default=20)
    parser.add_argument(
        "--reference-seeds",
        type=int,
        default=2,
        help="standalone trainings per arch; two or more also print the reference's own tau",
    )
    parser.add_argument(
        "--samplers", nargs="*", default=["sandwich", "uniform", "complexity_aware", "attentive"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--schedule", choices=["progressive_shrinking", "single_stage"], default=None
    )
    args = parser.parse_args()
    if args.reference_seeds < 1:
        parser.error(f"--reference-seeds: must be >= 1, got {args.reference_seeds}")
    torch.set_num_threads(args.threads)
    data = load_dataset(DatasetSpec(kind="digits"))
    for name in args.space or ["ofa_mbv3", "bignas"]:
        report = run_space(
            name,
            data,
            epochs=args.epochs,
            rank_archs=args.rank_archs,
            reference_seeds=args.reference_seeds,
            samplers=args.samplers,
            schedule=args.schedule,
        )
        print_report(report)


if __name__ == "__main__":
    main()
