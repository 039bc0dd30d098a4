"""How close lookup-table latencies are to measured ones, for every space, now and later.

For each space, preset and host runtime: profile a table on this machine (blocks alone, then
the calibration networks) unless ``--tables`` already holds a complete one; then measure
``--samples`` random subnets whole, twice, each time with ``--anchors`` of the table's
calibration networks timed in the same interleaved group, which re-anchor the table to the
machine's level at that moment (``validate(..., anchor=N)``, ``nas.hardware.anchor``). It
prints the share of re-anchored predictions within +-10% of the first measurement, the MAPE
and Kendall's tau; beside them the same share for the table re-anchored on its own a minute
earlier (as a job's searching stage does) and as profiled (what the level drift does to it);
the measurement's own noise (the second measurement scored against the first: within +-10%,
within +-10% once the level between them is divided out, and tau); and a MACs-to-latency line
fitted on the table's calibration networks. Then the vectorised predictor's throughput.
Targets: >= 95% within +-10%, tau >= 0.9, >= 100k archs/s.

    python benchmarks/latency_fidelity.py --tables var/fidelity     # profile, validate, keep
    python benchmarks/latency_fidelity.py --tables var/fidelity     # later: validate again

With ``--tables`` every row is appended to ``<table>.validation.json`` beside its table and
all kept rows are printed at the end, so a later run shows the first (``fresh``) validation of
each table next to its own (``rerun``: the kept table, not profiled again). Each row says when
its table was profiled and validated and the machine's load averages then.

ImageNet presets profile only ``--imagenet-resolutions``, at batch 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

import search_spaces
from nas.hardware import LatencyPredictor, TimingPolicy, builtin_devices, fidelity, read_table
from nas.hardware.anchor import measure_anchor, unanchored
from nas.hardware.fidelity import Fidelity
from nas.hardware.profile import ProfilePlan, Validation, profile, sample_archs, validate
from nas.hardware.table import LatencyTable, TableError, now

SPACES = ("ofa_mbv3", "bignas", "proxyless", "single_path", "nasnet")


class Row(BaseModel):
    """One validation of one table: the figures printed, and the measurements behind them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    preset: str
    runtime: str
    statistic: str
    run: Literal["fresh", "rerun"]
    at: datetime
    profiled_at: datetime
    load: str
    profile_s: float | None
    blocks: int
    anchor_scale: float
    anchor_spread: float
    before_scale: float
    table: Fidelity
    anchored_before: Fidelity
    unanchored: Fidelity
    noise: Fidelity
    noise_level_free: float
    macs_proxy: Fidelity
    validation: Validation
    repeat_ms: list[float]
    copies: int = 1


class Rows(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[Row] = []


def load_averages() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


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


def kept_table(out: Path) -> LatencyTable | None:
    """The complete table at ``out``, if a previous run left one."""
    if not out.exists():
        return None
    try:
        table = read_table(out)
    except TableError:
        return None
    return table if table.complete else None


def check(
    table: LatencyTable,
    samples: int,
    anchors: int,
    timing: TimingPolicy,
    run: Literal["fresh", "rerun"],
    copies: int = 1,
) -> Row:
    """Score ``table`` on ``samples`` subnets measured twice under ``timing`` (whatever plan
    profiled it), re-anchored beside them, re-anchored on its own a minute before (as a job
    does), and as profiled."""
    at, load = now(), load_averages()
    before = measure_anchor(table, networks=anchors)
    first = validate(table, samples, seed=1, anchor=anchors, timing=timing, copies=copies)
    again = validate(table, samples, seed=1, anchor=anchors, timing=timing, copies=copies)
    assert first.anchor is not None
    space = search_spaces.get(table.space, preset=table.preset)
    archs = [space.arch_from_dict(a) for a in first.archs]
    measured = np.array(first.measured_ms)
    repeat = np.array(again.measured_ms)
    as_profiled = LatencyPredictor(unanchored(table), space).predict(archs)
    level = float(np.median(measured / repeat))
    return Row(
        space=table.space,
        preset=table.preset,
        runtime=table.runtime,
        statistic=table.statistic,
        run=run,
        at=at,
        profiled_at=table.updated_at,
        load=load,
        profile_s=None,
        blocks=len(table.entries),
        anchor_scale=first.anchor.scale,
        anchor_spread=first.anchor.spread,
        before_scale=before.scale,
        table=first.table,
        anchored_before=fidelity(as_profiled * before.scale, measured),
        unanchored=fidelity(as_profiled, measured),
        noise=fidelity(repeat, measured),
        noise_level_free=float(np.mean(np.abs(repeat * level - measured) / measured <= 0.10)),
        macs_proxy=first.macs_proxy,
        validation=first,
        repeat_ms=again.measured_ms,
        copies=copies,
    )


def print_header() -> None:
    print(
        "| space | runtime | stat | run | profiled | validated | load 1/5/15 | profile s | "
        "anchor (spread) | within 10% | MAPE | tau | anchored before: x / within | as "
        "profiled: within | noise: within (level-free) / tau | MACs proxy: within / tau |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def print_row(row: Row) -> None:
    profiled = "kept" if row.profile_s is None else f"{row.profile_s:.0f}"
    copies = f" ({row.copies} copies)" if row.copies > 1 else ""
    t, b, u, n, m = row.table, row.anchored_before, row.unanchored, row.noise, row.macs_proxy
    print(
        f"| {row.space} | {row.runtime}{copies} | {row.statistic} | {row.run} | "
        f"{row.profiled_at:%H:%M} | {row.at:%H:%M} | {row.load} | {profiled} | "
        f"x{row.anchor_scale:.3f} ({row.anchor_spread:.1%}) | {t.within_10pct:.0%} | "
        f"{t.mape:.1%} | {t.kendall_tau:.3f} | x{row.before_scale:.3f} / {b.within_10pct:.0%} | "
        f"{u.within_10pct:.0%} | {n.within_10pct:.0%} ({row.noise_level_free:.0%}) / "
        f"{n.kendall_tau:.3f} | {m.within_10pct:.0%} / {m.kendall_tau:.3f} |",
        flush=True,
    )


def network_policy(args: argparse.Namespace) -> TimingPolicy:
    """How whole networks are timed: the calibration of a ``bench`` plan and every
    validation (so a ``quick`` table is checked against the same measurements)."""
    return TimingPolicy(
        warmup=args.warmup,
        min_repeats=args.min_repeats,
        max_repeats=2000,
        budget_s=args.network_budget,
    )


def plan_for(args: argparse.Namespace, preset: str) -> ProfilePlan:
    if args.plan == "quick":  # what a job's built-in host table is profiled with
        from workers.tables import quick_plan

        return quick_plan()  # type: ignore[return-value]
    block = TimingPolicy(
        warmup=args.warmup,
        min_repeats=args.min_repeats,
        max_repeats=2000,
        budget_s=args.block_budget,
    )
    return ProfilePlan(
        resolutions=args.imagenet_resolutions if preset != "tiny" else None,
        statistic=args.statistic,
        block_timing=block,
        network_timing=network_policy(args),
        calibration_samples=args.calibration,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="*", default=list(SPACES), choices=SPACES)
    parser.add_argument("--presets", nargs="*", default=["tiny"])
    parser.add_argument("--runtimes", nargs="*", default=["torch", "onnxruntime"])
    parser.add_argument("--samples", type=int, default=100, help="validation subnets")
    parser.add_argument("--calibration", type=int, default=30, help="calibration subnets")
    parser.add_argument("--anchors", type=int, default=8, help="networks timed to re-anchor")
    parser.add_argument("--copies", type=int, default=1, help="copies of each network timed")
    parser.add_argument(
        "--statistic", choices=["min", "median"], default=None, help="default: the runtime's"
    )
    parser.add_argument(
        "--plan", choices=["bench", "quick"], default="bench", help="quick: a job's host tables'"
    )
    parser.add_argument("--imagenet-resolutions", nargs="*", type=int, default=[224])
    parser.add_argument("--block-budget", type=float, default=0.2, help="seconds per block")
    parser.add_argument("--network-budget", type=float, default=0.2, help="seconds per net")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per figure")
    parser.add_argument("--min-repeats", type=int, default=20, help="timed samples at least")
    parser.add_argument("--tables", type=Path, default=None, help="keep tables here (rerun)")
    parser.add_argument("--batch", type=int, default=10_000, help="throughput batch")
    args = parser.parse_args(argv)
    folder = args.tables or Path(tempfile.mkdtemp(prefix="latency-fidelity-"))
    validation = network_policy(args)
    devices = builtin_devices()
    print(f"batch 1, 1 thread, {args.samples} validation subnets measured twice, "
          f"{args.anchors} anchor networks, plan {args.plan}; tables in {folder}")  # fmt: skip
    print()
    print_header()
    tables: list[LatencyTable] = []
    kept: list[Row] = []
    for preset in args.presets:
        for name in args.spaces:
            space = search_spaces.get(name, preset=preset)
            for runtime in args.runtimes:
                out = folder / f"{name}-{preset}-{runtime}.json"
                history = out.with_suffix(".validation.json")
                table = kept_table(out)
                profiled = None
                if table is None:
                    start = time.perf_counter()
                    table = profile(space, devices[f"host-cpu-{runtime}"], plan_for(args, preset),
                                    out)  # fmt: skip
                    profiled = time.perf_counter() - start
                rows = Rows.model_validate_json(history.read_text()) if history.exists() else Rows()
                kind = "rerun" if rows.rows else "fresh"
                row = check(table, args.samples, args.anchors, validation, kind, args.copies)
                row = row.model_copy(update={"profile_s": profiled})
                print_row(row)
                rows.rows.append(row)
                history.write_text(rows.model_dump_json())
                kept += rows.rows
                tables.append(table)
    print()
    print("Every validation kept beside these tables, oldest first per table:")
    print()
    print_header()
    for row in kept:
        print_row(row)
    print()
    for table in tables:
        rate = throughput(table, args.batch)
        print(f"predictor throughput, {table.space}/{table.preset} {table.runtime}: "
              f"{rate:,.0f} archs/s (batch {args.batch:,}, target >= 100,000)")  # fmt: skip


if __name__ == "__main__":
    main()
