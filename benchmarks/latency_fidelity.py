"""How close lookup-table latencies are to measured ones, against MACs as a proxy.

For each preset and host runtime: profile a table on this machine (blocks alone, then the
calibration networks), measure ``--samples`` fresh random subnets whole, and print the share
of predictions within +-10% of the measurement, the MAPE and Kendall's tau, next to the same
for a line fitted from MACs to latency on the table's calibration networks. Each table
entry and network keeps both its median and its minimum, so both statistics are scored from
one set of measurements. Then the vectorised predictor's throughput on 10,000 archs. Targets:
>= 95% within +-10%, tau >= 0.9, >= 100k archs/s.

    python benchmarks/latency_fidelity.py                        # tiny, both runtimes
    python benchmarks/latency_fidelity.py --presets tiny imagenet --imagenet-resolutions 224
    python benchmarks/latency_fidelity.py --tables var/bench     # keep (and reuse) the tables

With ``--tables`` the tables are kept and a rerun only validates them again; each run's
validation measurements are written beside them (``*.validation.json``).

ImageNet presets profile only ``--imagenet-resolutions`` (blocks at 25 resolutions would take
far longer than the 10 minutes this benchmark aims at), at batch 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import search_spaces
from nas.hardware import LatencyPredictor, TimingPolicy, builtin_devices, fidelity
from nas.hardware.fidelity import Fidelity, fit_line
from nas.hardware.profile import (
    ProfilePlan,
    Validation,
    calibration_blocks,
    fit_calibration,
    profile,
    sample_archs,
    validate,
)
from nas.hardware.table import LatencyTable


def score(table: LatencyTable, statistic: str, result: Validation) -> tuple[Fidelity, Fidelity]:
    """(table, MACs proxy) fidelity when entries, networks and calibration use ``statistic``."""
    space = search_spaces.get(table.space, preset=table.preset)
    restated = table.model_copy(update={"statistic": statistic})
    sums = LatencyPredictor(restated, space, calibrated=False)
    points = [
        point.model_copy(
            update={"block_sum_ms": sums.reference_sum(space.arch_from_dict(point.arch))}
        )
        for point in table.calibration_points
    ]
    blocks = calibration_blocks(sums, table)
    calibration = fit_calibration(points, blocks, statistic)  # type: ignore[arg-type]
    archs = [space.arch_from_dict(a) for a in result.archs]
    predicted = calibration.apply(sums.block_sums(archs), sums.block_counts(archs))
    measured = np.array([getattr(m, f"{statistic}_ms") for m in result.measurements])
    slope, intercept = fit_line(
        np.array([p.macs for p in points], dtype=np.float64),
        np.array([getattr(p.measured, f"{statistic}_ms") for p in points]),
    )
    macs = np.array(result.macs, dtype=np.float64)
    return fidelity(predicted, measured), fidelity(slope * macs + intercept, measured)


def throughput(table: LatencyTable, batch: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` archs/s of ``predict`` on ``batch`` random archs."""
    space = search_spaces.get(table.space, preset=table.preset)
    predictor = LatencyPredictor(table, space)
    archs = sample_archs(space, batch, np.random.default_rng(7), table.resolutions)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(archs)
        best = min(best, time.perf_counter() - start)
    return batch / best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa_mbv3")
    parser.add_argument("--presets", nargs="*", default=["tiny"])
    parser.add_argument("--runtimes", nargs="*", default=["torch", "onnxruntime"])
    parser.add_argument("--samples", type=int, default=100, help="validation subnets")
    parser.add_argument("--calibration", type=int, default=30, help="calibration subnets")
    parser.add_argument("--imagenet-resolutions", nargs="*", type=int, default=[224])
    parser.add_argument("--block-budget", type=float, default=0.3, help="seconds per block")
    parser.add_argument("--network-budget", type=float, default=1.0, help="seconds per net")
    parser.add_argument("--tables", type=Path, default=None, help="keep tables here (resume)")
    parser.add_argument("--batch", type=int, default=10_000, help="throughput batch")
    args = parser.parse_args(argv)
    folder = args.tables or Path(tempfile.mkdtemp(prefix="latency-fidelity-"))
    block = TimingPolicy(warmup=10, min_repeats=20, max_repeats=2000, budget_s=args.block_budget)
    network = TimingPolicy(warmup=5, min_repeats=20, max_repeats=2000, budget_s=args.network_budget)
    devices = builtin_devices()
    print(f"{args.space}, batch 1, 1 thread, {args.samples} validation subnets, "
          f"{args.calibration} calibration subnets; tables in {folder}")  # fmt: skip
    print()
    print("| preset | runtime | statistic | blocks | profile s | predictor | within 10% | "
          "MAPE | Kendall tau |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    tables = []
    for preset in args.presets:
        space = search_spaces.get(args.space, preset=preset)
        resolutions = args.imagenet_resolutions if preset != "tiny" else None
        for runtime in args.runtimes:
            out = folder / f"{args.space}-{preset}-{runtime}.json"
            plan = ProfilePlan(
                resolutions=resolutions,
                statistic="min",
                block_timing=block,
                network_timing=network,
                calibration_samples=args.calibration,
            )
            start = time.perf_counter()
            table = profile(space, devices[f"host-cpu-{runtime}"], plan, out)
            profiled = time.perf_counter() - start
            result = validate(table, args.samples, seed=1)
            out.with_suffix(".validation.json").write_text(result.model_dump_json())
            tables.append(table)
            for statistic in ("min", "median"):
                lut, proxy = score(table, statistic, result)
                for label, fid in (("lookup table", lut), ("MACs proxy", proxy)):
                    print(
                        f"| {preset} | {runtime} | {statistic} | {len(table.entries)} | "
                        f"{profiled:.0f} | {label} | {fid.within_10pct:.0%} | {fid.mape:.1%} | "
                        f"{fid.kendall_tau:.3f} |",
                        flush=True,
                    )
    print()
    for table in tables:
        rate = throughput(table, args.batch)
        print(f"predictor throughput, {table.preset}: {rate:,.0f} archs/s "
              f"(batch {args.batch:,}, target >= 100,000)")  # fmt: skip


if __name__ == "__main__":
    main()
