"""Building a latency table on the device itself, resumably, and checking it against reality.

``profile`` enumerates every distinct block of a space and preset at the chosen resolutions,
measures each alone, measures at least 20 random whole subnets, fits the calibration, and
writes the table as it goes: rerun it after an interruption and it continues where it
stopped. ``validate`` measures fresh random subnets whole and compares them with the
table's predictions and with a MACs-based proxy fitted on the same calibration networks.

Blocks (in small groups) and networks (in groups as large as memory allows) are measured in
interleaved rounds (``measure_many``), so load from other processes spreads over a group
instead of landing on one figure. Every block figure is net of the runtime's per-call overhead
(measured on a module that does nothing with the same input), because a network pays that
cost once and not per block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import search_spaces
from nas.hardware.anchor import anchor_archs, anchor_from, unanchored
from nas.hardware.device import Device, RuntimeName
from nas.hardware.fidelity import Fidelity, fidelity, fit_line
from nas.hardware.modules import block_input, build_block
from nas.hardware.predictor import LatencyPredictor, decomposition_of
from nas.hardware.runtimes import Runtime, make_runtime
from nas.hardware.table import (
    MIN_CALIBRATION_SAMPLES,
    Anchor,
    Calibration,
    CalibrationPoint,
    LatencyEntry,
    LatencyTable,
    Statistic,
    TableError,
    now,
    read_table,
    write_table,
)
from nas.hardware.timing import Measurement, TimingPolicy, measure, measure_many
from search_spaces import BlockSpec, SearchSpace

#: ``progress(phase, done, total)``; phases are "blocks", "calibration" and "validation".
Progress = Callable[[str, int, int], None]
#: Runners measured together in interleaved rounds; the table is saved after each chunk.
BLOCK_CHUNK = 24
#: Weights of the whole networks measured together in one interleaved group: every network of
#: a tiny preset, a score of ImageNet-size ones. Networks timed in separate groups differ by
#: the machine's speed between the groups (+-5% on a shared host, which is what ranks them
#: wrongly); timed together, each one's samples span the same moments.
NETWORK_GROUP_BYTES = 512 * 2**20
#: The statistic a table adds up unless the plan names one. onnxruntime runs a tiny network in
#: 0.1-0.2 ms, where one interrupt is a large share of a sample: there the minimum ranked 100
#: validation networks better in five runs of five (Kendall tau 0.891-0.922 vs 0.860-0.907).
#: Eager torch's median ranked them better in five runs of six (tiny and ImageNet).
DEFAULT_STATISTIC: dict[RuntimeName, Statistic] = {"onnxruntime": "min", "torch": "median"}
#: Copies of the drift reference network run beside every group (see ``Profiler``); odd, so
#: the middle copy is one of them.
REFERENCE_COPIES = 5


class ProfilePlan(BaseModel):
    """What to measure and how hard; the CLI and the API build one of these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolutions: list[int] | None = Field(
        default=None, min_length=1, description="Default: every resolution of the preset."
    )
    statistic: Statistic | None = Field(
        default=None,
        description="None: the runtime's (``DEFAULT_STATISTIC``). 'min' is steadier on a shared "
        "machine (noise only ever adds time).",
    )
    block_timing: TimingPolicy = TimingPolicy()
    network_timing: TimingPolicy = TimingPolicy(budget_s=3.0)
    calibration_samples: int = Field(default=30, ge=MIN_CALIBRATION_SAMPLES, le=10_000)
    seed: int = Field(default=0, ge=0)
    max_entries: int | None = Field(
        default=None, ge=1, description="Measure at most this many new blocks in this run."
    )
    save_every_s: float = Field(default=5.0, gt=0.0)
    drift_correction: bool = Field(
        default=True, description="Scale figures by a reference module measured beside them."
    )


class _Nothing(nn.Module):
    """Reads its input and returns one element: the runtime's fixed cost of a call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)[:1]


class Profiler:
    """Measures blocks and networks on one device (owns its runtime; one thread at a time).

    With a drift reference (``use_reference``), every group also runs the space's smallest
    subnet, and all figures are scaled by its minimum when the table was started over its
    minimum now: a machine that runs 15% slower for a while (other tenants, heat, clocks) then
    yields the figures it would have yielded at the start. A subnet of the space itself slows
    down as the measured work does (framework dispatch and kernels alike); a synthetic kernel
    would not. The reference is ``REFERENCE_COPIES`` separately built copies and its figure the
    middle copy's: one copy's speed depends on where its memory landed and changes from group
    to group (onnxruntime sessions of one network differ by 3-25%; one copy of the ImageNet
    min subnet ran 1.27 ms beside one group and 1.47 ms beside the next), and a later run
    (validation, a resumed table) builds the reference anew. A single copy, or the fastest of
    several, scales everything by that luck; the middle one is the copy least moved by it.
    """

    def __init__(self, device: Device, runtime: Runtime | None = None) -> None:
        self.device = device
        self.runtime = runtime or make_runtime(device)
        self._overhead: dict[tuple[int, ...], float] = {}
        self.single_thread = device.accelerator == "cpu" and device.threads == 1
        self.reference: Measurement | None = None
        self._reference_runs: list[Callable[[], object]] = []

    def use_reference(
        self, space: SearchSpace, baseline: Measurement | None, policy: TimingPolicy
    ) -> Measurement:
        """Run the drift reference beside every group from now on; measure its baseline first
        unless one is given (a resumed table keeps its own)."""
        arch = space.reference_archs()["min"]
        supernet = space.build_supernet().eval()
        self._reference_runs = [
            self._network_run(space, supernet, arch) for _ in range(REFERENCE_COPIES)
        ]
        if baseline is None:
            baseline = _middle(
                measure_many(self._reference_runs, policy, single_thread=self.single_thread)
            )
        self.reference = baseline
        return baseline

    def _measure(self, runs: list[Callable[[], object]], policy: TimingPolicy) -> list[Measurement]:
        if self.reference is None or not self._reference_runs:
            return measure_many(runs, policy, single_thread=self.single_thread)
        found = measure_many([*runs, *self._reference_runs], policy,
                             single_thread=self.single_thread)  # fmt: skip
        current = _middle(found[len(runs) :])
        factor = self.reference.min_ms / max(current.min_ms, 1e-9)  # the steadiest figure
        return [m.scaled(factor) for m in found[: len(runs)]]

    def call_overhead(self, example: torch.Tensor, policy: TimingPolicy) -> float:
        shape = tuple(example.shape)
        if shape not in self._overhead:
            run = self.runtime.prepare(_Nothing(), example)
            self._overhead[shape] = measure(run, policy, single_thread=self.single_thread).min_ms
        return self._overhead[shape]

    def measure_blocks(
        self, specs: Sequence[BlockSpec], space: SearchSpace, policy: TimingPolicy
    ) -> list[LatencyEntry]:
        """Entries for ``specs``, measured in interleaved rounds (see ``measure_many``)."""
        torch.manual_seed(0)
        examples = [block_input(spec, self.device.batch_size) for spec in specs]
        runs = [
            self.runtime.prepare(build_block(spec, space), example)
            for spec, example in zip(specs, examples, strict=True)
        ]
        raw = self._measure(runs, policy)
        return [
            LatencyEntry.of(spec, found, self.call_overhead(example, policy))
            for spec, found, example in zip(specs, raw, examples, strict=True)
        ]

    def measure_networks(
        self,
        space: SearchSpace,
        supernet: nn.Module,
        archs: Sequence[Any],
        policy: TimingPolicy,
        *,
        copies: int = 1,
    ) -> list[Measurement]:
        """Whole extracted subnets of ``archs`` at their resolutions, interleaved.

        ``copies``: build each network that many times and keep the middle copy's figures
        (as for the drift reference): one copy's speed depends on where its memory landed, by
        more than a tiny onnxruntime network's differences from its neighbours.
        """
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        runs = [self._network_run(space, supernet, arch) for arch in archs for _ in range(copies)]
        found = self._measure(runs, policy)
        return [_middle(found[i : i + copies]) for i in range(0, len(found), copies)]

    def _network_run(
        self, space: SearchSpace, supernet: nn.Module, arch: Any
    ) -> Callable[[], object]:
        shape = (self.device.batch_size, space.in_channels, arch.resolution, arch.resolution)
        example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        net = space.extract(supernet, arch).eval()  # type: ignore[arg-type]
        return self.runtime.prepare(net, example)


def _middle(copies: Sequence[Measurement]) -> Measurement:
    """The measurement of the copy whose minimum is the median of the copies' minima."""
    return sorted(copies, key=lambda m: m.min_ms)[(len(copies) - 1) // 2]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def network_groups(space: SearchSpace, archs: Sequence[Any]) -> list[Sequence[Any]]:
    """``archs`` in order, cut into groups of at most ``NETWORK_GROUP_BYTES`` of float32
    weights (at least one network each)."""
    sizes = space.complexity_batch(archs)[1] * 4 if len(archs) else []
    groups: list[Sequence[Any]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + int(size) > NETWORK_GROUP_BYTES:
            groups.append(archs[start:i])
            start, total = i, 0
        total += int(size)
    if start < len(archs):
        groups.append(archs[start:])
    return groups


def sample_archs(
    space: SearchSpace, count: int, rng: np.random.Generator, resolutions: Sequence[int]
) -> list[Any]:
    """``count`` uniformly random archs, each at a resolution drawn from ``resolutions``."""
    archs = []
    for _ in range(count):
        arch = space.sample(rng)
        if arch.resolution not in resolutions:
            resolution = int(rng.choice(np.asarray(resolutions)))
            arch = space.arch_from_dict({**arch.to_dict(), "resolution": resolution})
        archs.append(arch)
    return archs


def fit_calibration(
    points: Sequence[CalibrationPoint], blocks: Sequence[float], statistic: Statistic
) -> Calibration:
    """Least squares from the table's block sums (and ``blocks``, each point's block count) to
    measured whole-network latency.

    Two models are fitted: ``slope * sum + intercept`` and the same plus a term per block. The
    one whose points are predicted better by fits that leave each of them out (closed form:
    the residual over ``1 - leverage``) is kept, so the extra term is used only where it
    generalises, not wherever it lowers the error on the points themselves.
    """
    if len(points) < MIN_CALIBRATION_SAMPLES:
        raise ValueError(
            f"calibration needs at least {MIN_CALIBRATION_SAMPLES} networks, got {len(points)}"
        )
    if len(blocks) != len(points):
        raise ValueError(f"blocks: {len(blocks)} counts for {len(points)} calibration points")
    sums = np.array([p.block_sum_ms for p in points], dtype=np.float64)
    counts = np.asarray(blocks, dtype=np.float64)
    measured = np.array([getattr(p.measured, f"{statistic}_ms") for p in points])
    ones = np.ones_like(sums)
    fits = []
    for design in (np.stack([sums, ones], axis=1), np.stack([sums, ones, counts], axis=1)):
        if np.linalg.matrix_rank(design) < design.shape[1]:
            continue  # e.g. every arch has as many blocks: the term is the intercept again
        coef, loo = _least_squares(design, measured)
        if coef[0] > 0:
            fits.append((float(np.mean(np.abs(loo) / measured)), coef))
    if not fits:
        slope = _least_squares(np.stack([sums, ones], axis=1), measured)[0][0]
        raise ValueError(
            f"calibration slope {slope:.3g} <= 0: the block sums do not track the measured "
            "networks (too noisy a machine, or too little time per measurement); quiet the "
            "device and rerun with --recalibrate"
        )
    loo_mape, coef = min(fits, key=lambda fit: fit[0])
    slope, intercept = float(coef[0]), float(coef[1])
    per_block = float(coef[2]) if len(coef) == 3 else 0.0
    fitted = slope * sums + per_block * counts + intercept
    total = float(((measured - measured.mean()) ** 2).sum())
    r2 = 1.0 - float(((measured - fitted) ** 2).sum()) / total if total > 0 else 1.0
    mape = float(np.mean(np.abs(fitted - measured) / measured))
    return Calibration(
        slope=slope,
        intercept_ms=intercept,
        per_block_ms=per_block,
        samples=len(points),
        r2=r2,
        mape=mape,
        loo_mape=loo_mape,
    )


def _least_squares(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and leave-one-out residuals (PRESS) of ``y ~ design``."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    leverage = np.einsum("ij,ij->i", design, design @ np.linalg.pinv(design.T @ design))
    residual = y - design @ coef
    return coef, residual / np.maximum(1.0 - leverage, 1e-9)


def _start(
    space: SearchSpace, device: Device, plan: ProfilePlan, runtime: Runtime, expected: int
) -> LatencyTable:
    stamp = now()
    return LatencyTable(
        space=space.name,
        preset=space.preset,
        resolutions=sorted(plan.resolutions or space.resolutions),
        device=device,
        runtime=device.runtime,
        statistic=plan.statistic or DEFAULT_STATISTIC[device.runtime],
        block_timing=plan.block_timing,
        network_timing=plan.network_timing,
        software=runtime.versions(),
        created_at=stamp,
        updated_at=stamp,
        expected_entries=expected,
    )


def _resume(out: Path, fresh: LatencyTable, *, resume: bool) -> LatencyTable:
    if not resume or not out.exists():
        return fresh
    old = read_table(out)
    for name in ("space", "preset", "resolutions", "device", "statistic"):
        if getattr(old, name) != getattr(fresh, name):
            raise TableError(
                f"{out} holds a table with another {name} ({getattr(old, name)!r}, this run "
                f"asks for {getattr(fresh, name)!r}); choose another --out or delete it"
            )
    # a figure the old table did not record (older versions kept no "cpu") cannot be compared
    kept = old.software
    changed = sorted(
        k for k, v in fresh.software.items() if k != "platform" and kept.get(k, v) != v
    )
    if changed:
        raise TableError(
            f"{out} was measured with other software or hardware ({', '.join(changed)} differ); "
            "entries measured under different ones cannot be mixed: delete it and start over"
        )
    return old


def profile(
    space: SearchSpace,
    device: Device,
    plan: ProfilePlan,
    out: Path,
    *,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
    resume: bool = True,
    recalibrate: bool = False,
) -> LatencyTable:
    """Measure (or continue measuring) the table for ``space`` on ``device`` into ``out``.

    ``recalibrate`` drops the whole-network measurements and fits the calibration anew (after
    a calibration that failed, or once the device runs under its final conditions).
    """
    profiler = Profiler(device, runtime)
    decomposition = decomposition_of(space)
    blocks = decomposition.distinct_blocks(plan.resolutions)
    fresh = _start(space, device, plan, profiler.runtime, len(blocks))
    table = _resume(out, fresh, resume=resume)
    if plan.drift_correction or table.reference is not None:
        table.reference = profiler.use_reference(space, table.reference, table.block_timing)
    if recalibrate:
        table.calibration_points.clear()
        table.calibration = None
        table.anchor = None  # it scaled the old calibration
    report = progress or (lambda phase, done, total: None)
    last_save = time.monotonic()

    def save(force: bool = False) -> None:
        nonlocal last_save
        if force or time.monotonic() - last_save >= plan.save_every_s:
            table.updated_at = now()
            write_table(table, out)
            last_save = time.monotonic()

    try:
        todo = [spec for spec in blocks if spec.key not in table.entries]
        report("blocks", len(blocks) - len(todo), len(blocks))
        if plan.max_entries is not None:
            todo = todo[: plan.max_entries]
        for chunk in chunks(todo, BLOCK_CHUNK):
            for entry in profiler.measure_blocks(chunk, space, table.block_timing):
                table.entries[entry.spec.to_spec().key] = entry
            report("blocks", len(table.entries), len(blocks))
            save()
        if len(table.entries) == len(blocks):
            _calibrate(space, profiler, table, plan, report, save)
    finally:
        save(force=True)
    return table


def _calibrate(
    space: SearchSpace,
    profiler: Profiler,
    table: LatencyTable,
    plan: ProfilePlan,
    report: Progress,
    save: Callable[[], None],
) -> None:
    if table.calibration is not None:
        return
    rng = np.random.default_rng(plan.seed)
    archs = sample_archs(space, plan.calibration_samples, rng, table.resolutions)
    predictor = LatencyPredictor(table, space, calibrated=False)
    report("calibration", len(table.calibration_points), len(archs))
    todo = archs[len(table.calibration_points) :]
    supernet = space.build_supernet().eval() if todo else None
    for chunk in network_groups(space, todo):
        assert supernet is not None
        results = profiler.measure_networks(space, supernet, chunk, table.network_timing)
        for arch, result in zip(chunk, results, strict=True):
            point = CalibrationPoint(
                arch=arch.to_dict(),
                block_sum_ms=predictor.reference_sum(arch),
                measured=result,
                macs=space.complexity(arch).macs,
            )
            table.calibration_points.append(point)
        report("calibration", len(table.calibration_points), len(archs))
        save()
    table.calibration = fit_calibration(
        table.calibration_points, calibration_blocks(predictor, table), table.statistic
    )


def calibration_blocks(predictor: LatencyPredictor, table: LatencyTable) -> np.ndarray:
    """Block count of each of ``table``'s calibration networks."""
    space = predictor.space
    return predictor.block_counts([space.arch_from_dict(p.arch) for p in table.calibration_points])


class Validation(BaseModel):
    """Predicted vs measured on fresh random subnets; the MACs proxy for comparison."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: Fidelity
    macs_proxy: Fidelity
    archs: list[dict[str, Any]]
    predicted_ms: list[float]
    measured_ms: list[float]
    measurements: list[Measurement]
    macs: list[int]
    anchor: Anchor | None = Field(
        default=None, description="Fitted on networks timed beside these (``anchor=N``)."
    )


def validate(
    table: LatencyTable,
    samples: int,
    *,
    seed: int = 1,
    timing: TimingPolicy | None = None,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
    drift_correction: bool | None = None,
    anchor: int = 0,
    copies: int = 1,
) -> Validation:
    """Measure ``samples`` random subnets whole on ``table.device`` and score the table.

    The MACs proxy is a line from MACs to latency fitted on the table's own calibration
    networks, so both predictors see the same measurements before being tested.

    ``drift_correction``: scale the measurements to the table's drift reference, i.e. check the
    table against the conditions it was measured in. By default on for a table with a
    reference and no anchor; a re-anchored table (``nas.hardware.anchor``) already predicts the
    machine as it is now, so it is checked against raw measurements.

    ``anchor``: re-anchor the table on this many of its calibration networks, timed in the
    first group beside the validation subnets (so at the same moments: on a shared host the
    level can move by more than a fidelity target within minutes), and score the re-anchored
    predictions against raw measurements. The validation networks themselves are not used to
    fit it. ``copies``: time every network (anchors included) as the middle of that many
    separately built copies (``Profiler.measure_networks``).
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    if anchor < 0:
        raise ValueError(f"anchor must be >= 0, got {anchor}")
    space = search_spaces.get(table.space, preset=table.preset)
    if anchor:
        table = unanchored(table)
    predictor = LatencyPredictor(table, space)
    profiler = Profiler(table.device, runtime)
    policy = timing or table.network_timing
    if drift_correction is None:
        drift_correction = table.anchor is None and not anchor
    if drift_correction and table.reference is not None:
        profiler.use_reference(space, table.reference, policy)
    archs = sample_archs(space, samples, np.random.default_rng(seed), table.resolutions)
    predicted = predictor.predict(archs)
    supernet = space.build_supernet().eval()
    results: list[Measurement] = []
    report = progress or (lambda phase, done, total: None)
    anchors = anchor_archs(table, space, anchor) if anchor else []
    fitted = None
    for chunk in network_groups(space, archs):
        report("validation", len(results), samples)
        found = profiler.measure_networks(
            space, supernet, [*anchors, *chunk], policy, copies=copies
        )
        if anchors:
            anchored = found[: len(anchors)]
            fitted = anchor_from(table, anchors, predictor.predict(anchors), anchored)
            predicted = predicted * fitted.scale
        results += found[len(anchors) :]
        anchors = []  # the first group's level: ImageNet-size subnets span a few groups
    measured = [getattr(result, f"{table.statistic}_ms") for result in results]
    report("validation", samples, samples)
    macs = space.complexity_batch(archs)[0]
    points = table.calibration_points
    slope, intercept = fit_line(
        np.array([p.macs for p in points], dtype=np.float64),
        np.array([getattr(p.measured, f"{table.statistic}_ms") for p in points]),
    )
    measured_array = np.array(measured)
    return Validation(
        table=fidelity(predicted, measured_array),
        macs_proxy=fidelity(slope * macs.astype(np.float64) + intercept, measured_array),
        archs=[arch.to_dict() for arch in archs],
        predicted_ms=[float(v) for v in predicted],
        measured_ms=measured,
        measurements=results,
        macs=[int(m) for m in macs],
        anchor=fitted,
    )
