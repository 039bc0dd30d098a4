"""Sample efficiency of the search strategies on a fixed ground-truth table.

The table (``benchmarks/data``, built once with ``--build``) holds >= 2,000 subnets of the tiny
OFA MobileNetV3 space, their val accuracy measured from a supernet trained on digits (BN
recalibrated; val is 60% of digits, so that noise does not decide the front) and their MACs.
Latency comes from a host lookup table (``--table``, the ``nas.hardware`` predictor) when one is
given, from MACs otherwise. Each strategy searches the table's subnets (a mutation or crossover
lands on the nearest subnet of the table, by Hamming distance of the encodings) for accuracy
against latency, and every distinct subnet it asks about costs one true evaluation (a table
lookup).

Hypervolume: accuracy and latency normalised to [0, 1] by the table's own ranges (0 = best),
reference point (1, 1), so the table's full Pareto front is the best-known hypervolume. For
each strategy, 5 seeds: hypervolume after n true evaluations (mean +- standard error), and the
evaluations needed to reach 99% of the best-known hypervolume. Target: LINAS gets there with
>= 4x fewer true evaluations than random search.

    nice -n 10 python -m benchmarks.search_quality --build      # once: train + measure (slow)
    nice -n 10 python -m benchmarks.search_quality --table var/tables/ofa_mbv3-tiny-onnxruntime.json
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import search_spaces  # noqa: E402
from benchmarks._quality_table import TABLE, build_table, load_table  # noqa: E402
from nas.search import (  # noqa: E402
    GenomeOperators,
    MacsObjective,
    MeasuredObjective,
    Objective,
    Operators,
    SearchProblem,
    SearchResult,
    make_strategy,
    normalized_hypervolume,
)
from nas.search.operators import Offspring  # noqa: E402

#: label -> (strategy, options). ``linas``: its defaults (20 random, then rounds of 5 picked by
#: expected hypervolume gain, gradient-boosted trees); ``linas_front``: DyNAS-T's selection.
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "linas": ("linas", {}),
    "linas_front": ("linas", {"selection": "front"}),
    "nsga2": ("nsga2", {"population_size": 20, "generations": 100_000}),
    "optuna_nsga2": ("optuna_nsga2", {"population_size": 20, "max_trials": 5000}),
    "random": ("random", {}),
}
CHECKPOINTS = (25, 50, 100, 150, 200, 300, 400, 600, 1000, 1500, 2000)


class TableSpace:
    """The table's subnets as a search space: whatever a strategy proposes lands on the
    nearest subnet of the table (Hamming distance of the encodings, ties at random), so every
    candidate has a ground truth."""

    def __init__(self, space: Any, archs: Sequence[Any]) -> None:
        self.space = space
        self.archs = list(archs)
        self.encodings = space.encode_batch(self.archs).astype(np.float32)
        self._norms = (self.encodings**2).sum(axis=1)
        self._row = {e.tobytes(): i for i, e in enumerate(self.encodings)}
        macs = space.complexity_batch(self.archs)[0]
        self._min, self._max = self.archs[int(np.argmin(macs))], self.archs[int(np.argmax(macs))]
        self.name, self.preset, self.encoding_dim = space.name, space.preset, space.encoding_dim

    def rows(self, archs: Sequence[Any]) -> np.ndarray:
        codes = self.space.encode_batch(archs)
        return np.array([self._row[c.tobytes()] for c in codes], dtype=np.int64)

    def snap(
        self, archs: Sequence[Any], rng: np.random.Generator, avoid: np.ndarray | None = None
    ) -> np.ndarray:
        """Table rows nearest to ``archs`` (``avoid[i]``: a row not to land on, or -1)."""
        codes = self.space.encode_batch(archs).astype(np.float32)
        distance = self._norms[None, :] - 2.0 * codes @ self.encodings.T
        distance += rng.random(distance.shape)  # integer distances: random tie-break
        if avoid is not None:
            hit = avoid >= 0
            distance[np.flatnonzero(hit), avoid[hit]] = np.inf
        return np.argmin(distance, axis=1)

    def sample(self, rng: np.random.Generator, mode: str = "random") -> Any:
        if mode == "min":
            return self._min
        if mode == "max":
            return self._max
        return self.archs[int(rng.integers(len(self.archs)))]

    def arch_from_dict(self, data: dict[str, Any]) -> Any:
        arch = self.space.arch_from_dict(data)
        return self.archs[int(self.snap([arch], np.random.default_rng(len(self._row)))[0])]

    def choices(self) -> dict[str, list[list[int]]]:
        return self.space.choices()

    def encode_batch(self, archs: Sequence[Any]) -> np.ndarray:
        return self.space.encode_batch(archs)

    def complexity_batch(self, archs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        return self.space.complexity_batch(archs)


class TableOperators(Operators):
    """The vectorised operators of the real space, children snapped onto the table; a
    mutant whose choices changed never snaps back onto its own parent."""

    def __init__(self, table: TableSpace) -> None:
        self.table = table
        self.inner = GenomeOperators(table.space)
        self.genes = self.inner.genes_of(table.archs)

    def sample(self, n: int, rng: np.random.Generator) -> Offspring:
        rows = rng.integers(len(self.table.archs), size=n)
        return [self.table.archs[r] for r in rows], self.genes[rows]

    def genes_of(self, archs: Sequence[Any]) -> np.ndarray:
        return self.genes[self.table.rows(archs)]

    def offspring(
        self,
        archs: Sequence[Any],
        genes: np.ndarray | None,
        first: np.ndarray,
        second: np.ndarray,
        cross: np.ndarray,
        mutation_prob: float,
        rng: np.random.Generator,
    ) -> Offspring:
        parents = self.genes_of(archs) if genes is None else genes
        children, child_genes = self.inner.offspring(
            archs, parents, first, second, cross, mutation_prob, rng
        )
        assert child_genes is not None
        own = self.table.rows([archs[i] for i in first])
        moved = (child_genes != parents[first]).any(axis=1) & ~cross
        rows = self.table.snap(children, rng, avoid=np.where(moved, own, -1))
        return [self.table.archs[r] for r in rows], self.genes[rows]


def latency_objective(space: Any, table: Path | None) -> Objective:
    if table is None:
        return MacsObjective(space, name="latency")
    from nas.hardware import LatencyPredictor, read_table
    from nas.search import LatencyObjective

    latency = read_table(table)
    return LatencyObjective(LatencyPredictor(latency, space), device=latency.device.name)


def curve(
    result: SearchResult, directions: list[Any], bounds: tuple[list[float], list[float]]
) -> np.ndarray:
    """Hypervolume of the first n evaluated subnets, for n = 1..N (incremental front)."""
    ordered = sorted(result.subnets, key=lambda s: s.evaluation or 0)
    values = np.array([[s.values[o.name] for o in result.objectives] for s in ordered])
    volumes = np.zeros(len(values))
    front = np.empty((0, values.shape[1]))
    for n in range(len(values)):
        front = np.vstack([front, values[n : n + 1]])
        volumes[n] = normalized_hypervolume(front, directions, *bounds)
        keep = _non_dominated(front, directions)
        front = front[keep]
    return volumes


def _non_dominated(values: np.ndarray, directions: list[Any]) -> np.ndarray:
    from nas.search import pareto_mask, to_minimization

    return pareto_mask(to_minimization(values, directions))


def mean_se(samples: Sequence[float]) -> str:
    if len(samples) == 1:
        return f"{samples[0]:.4f}"
    return (
        f"{statistics.mean(samples):.4f} +- {statistics.stdev(samples) / len(samples) ** 0.5:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="Train + measure the table, once.")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("var/quality/supernet"))
    parser.add_argument("--table", type=Path, default=None, help="Host latency table (JSON).")
    parser.add_argument(
        "--data", type=Path, default=None, help="The ground-truth file (read, or --build's output)."
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-evaluations", type=int, default=600, help="Random: all.")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args()
    if args.build:
        build_table(args.checkpoint_dir, out=args.data or TABLE)
        return

    data = load_table(args.data)
    space = search_spaces.get(data["space"], preset=data["preset"])
    records = data["records"]
    archs = [space.arch_from_dict(r["arch"]) for r in records]
    accuracy = {r["id"]: r["accuracy"] for r in records}
    table_space = TableSpace(space, archs)
    latency = latency_objective(space, args.table)
    measure = MeasuredObjective(lambda batch: np.array([accuracy[a.id] for a in batch]))
    problem = SearchProblem(table_space, [measure, latency], operators=TableOperators(table_space))
    everything = problem.evaluate(problem.candidates(archs))
    bounds = (everything.min(axis=0).tolist(), everything.max(axis=0).tolist())
    best = normalized_hypervolume(everything, problem.directions, *bounds)
    print(
        f"table: {len(archs)} subnets of {space.name}/{space.preset}, accuracy "
        f"{bounds[0][0]:.2f}-{bounds[1][0]:.2f}% ({data['split']}), {latency.name} "
        f"{bounds[0][1]:.4g}-{bounds[1][1]:.4g} {latency.unit}; best-known hypervolume {best:.4f}"
    )
    curves: dict[str, list[np.ndarray]] = {}
    reach: dict[str, list[int | None]] = {}
    for kind in args.strategies:
        name, options = STRATEGIES[kind]
        budget = len(archs) if name == "random" else min(args.max_evaluations, len(archs))
        strategy = make_strategy(name, max_evaluations=budget, **options)
        curves[kind], reach[kind] = [], []
        for seed in range(args.seeds):
            started = time.perf_counter()
            volumes = curve(strategy.run(problem, seed=seed), problem.directions, bounds)
            hit = np.flatnonzero(volumes >= 0.99 * best)
            curves[kind].append(volumes)
            reach[kind].append(int(hit[0]) + 1 if hit.size else None)
            print(
                f"  {kind} seed {seed}: {len(volumes)} evaluations, hv {volumes[-1]:.4f}, "
                f"99% at {reach[kind][-1]} ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    print(f"\nhypervolume (normalised; best-known = {best:.4f}) after n true evaluations\n")
    print("| n | " + " | ".join(args.strategies) + " |")
    print("|---|" + "---|" * len(args.strategies))
    for n in CHECKPOINTS:
        cells = []
        for kind in args.strategies:
            at = [c[min(n, len(c)) - 1] for c in curves[kind] if len(c) >= min(n, len(c))]
            cells.append(mean_se(at) if n <= max(len(c) for c in curves[kind]) else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\ntrue evaluations to reach 99% of the best-known hypervolume\n")
    print("| strategy | per seed | mean | vs random |")
    print("|---|---|---|---|")
    random_mean = _mean_reach(reach.get("random", []))
    for kind in args.strategies:
        mean = _mean_reach(reach[kind])
        ratio = "-" if mean is None or random_mean is None else f"{random_mean / mean:.1f}x fewer"
        ratio = "baseline" if kind == "random" else ratio
        shown = ", ".join("never" if r is None else str(r) for r in reach[kind])
        print(f"| {kind} | {shown} | {'-' if mean is None else f'{mean:.0f}'} | {ratio} |")


def _mean_reach(values: Sequence[int | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return statistics.mean(v for v in values if v is not None)


if __name__ == "__main__":
    main()
