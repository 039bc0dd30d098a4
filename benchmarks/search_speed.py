"""How fast the constrained evolution searches: candidates scored per second.

Once-for-All's setting: population 100, 500 generations, parent ratio 0.25, mutation ratio
0.5, mutation probability 0.1, predicted accuracy maximised under a latency budget from a
lookup table (about 12-22 s on CPU in the original code). Target here: the whole 500
generations in <= 1.5 s on 2 cores. One row per accuracy predictor; each fitted on 500 random
subnets of the tiny OFA MobileNetV3 space with accuracy-like targets (a fixed function of
log-MACs and per-choice effects: the predictor's *speed*, not its quality, is measured).

    nice -n 10 python benchmarks/search_speed.py                       # host table from var/
    nice -n 10 python benchmarks/search_speed.py --table path/to/table.json --budget-ms 0.15
    nice -n 10 python benchmarks/search_speed.py --latency macs        # no table: MACs stand-in
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread: predictor batches are small

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import search_spaces  # noqa: E402
from nas.predictors import make_predictor  # noqa: E402
from nas.search import (  # noqa: E402
    Constraint,
    LatencyObjective,
    MacsObjective,
    Objective,
    PredictedObjective,
    SearchProblem,
    make_strategy,
)

DEFAULT_TABLE = Path("var/tables/ofa_mbv3-tiny-onnxruntime.json")


def latency_objective(space: Any, args: argparse.Namespace) -> tuple[Objective, float, str]:
    """(objective, budget, description): the host table's predictor, or MACs."""
    if args.latency == "macs":
        macs = space.complexity_batch([space.sample(np.random.default_rng(0), "max")])[0][0]
        return MacsObjective(space), 0.5 * float(macs), "MACs (stand-in, half the max subnet)"
    from nas.hardware import LatencyPredictor, read_table

    if not args.table.exists():
        raise SystemExit(
            f"{args.table} is missing: profile one with `nas device profile` (or "
            "benchmarks/latency_fidelity.py --tables var/tables), or pass --latency macs"
        )
    table = read_table(args.table)
    estimator = LatencyPredictor(table, space)
    objective = LatencyObjective(estimator, device=table.device.name)
    if args.budget_ms is None:
        rng = np.random.default_rng(0)
        extremes = estimator.predict([space.sample(rng, "min"), space.sample(rng, "max")])
        args.budget_ms = float(extremes.mean())
    return objective, args.budget_ms, f"table {table.describe()}, {args.budget_ms:.4f} ms budget"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", choices=["table", "macs"], default="table")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--budget-ms", type=float, default=None, help="Default: mid-range.")
    parser.add_argument("--predictors", nargs="+", default=["mlp", "ridge", "gbt"])
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="Runs per row; the median.")
    args = parser.parse_args()

    space = search_spaces.get("ofa_mbv3", preset="tiny")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(500)]
    x = space.encode_batch(archs)
    macs = space.complexity_batch(archs)[0]
    y = 70 + 6 * np.log(macs / macs.min()) + x @ rng.normal(0, 0.4, x.shape[1])
    latency, budget, described = latency_objective(space, args)
    print(f"space ofa_mbv3/tiny; constraint: {described}")
    print(f"population {args.population}, {args.generations} generations, {args.repeats} repeats\n")
    print("| predictor | total (s) | per generation (ms) | candidates | candidates/s | best acc |")
    print("|---|---|---|---|---|---|")
    for kind in args.predictors:
        predictor = make_predictor(kind).fit(x, y)
        problem = SearchProblem(
            space, [PredictedObjective(predictor), latency], [Constraint(latency, budget)]
        )
        strategy = make_strategy(
            "evolution", population_size=args.population, generations=args.generations
        )
        strategy.run(problem, seed=0)  # warm caches (decompositions, imports)
        times, result = [], None
        for repeat in range(args.repeats):
            started = time.perf_counter()
            result = strategy.run(problem, seed=repeat)
            times.append(time.perf_counter() - started)
        assert result is not None and result.best_subnet() is not None
        best = result.best_subnet()
        assert best is not None and best.limits[latency.name] <= budget
        total = statistics.median(times)
        print(
            f"| {kind} | {total:.3f} | {1000 * total / args.generations:.2f} | "
            f"{result.num_candidates} | {result.num_candidates / total:,.0f} | "
            f"{best.values['accuracy']:.2f} |"
        )


if __name__ == "__main__":
    main()
