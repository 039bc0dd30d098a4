"""Re-anchoring a latency table to the machine's level now, and the host tables a job takes.

Timing here uses short policies on a shared machine: the tests check the mechanism (the scale
a doctored table needs is recovered from real measured networks, within a loose bound), not
how quiet the machine is.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import search_spaces
from nas.hardware import (
    Anchor,
    LatencyPredictor,
    TimingPolicy,
    builtin_devices,
    read_table,
    write_table,
)
from nas.hardware.anchor import (
    anchor_archs,
    fit_scale,
    measure_anchor,
    unanchored,
    with_anchor,
)
from nas.hardware.profile import ProfilePlan, Profiler, profile, sample_archs, validate
from nas.hardware.table import LatencyTable, now
from workers.tables import anchor_log_path, host_table, host_table_path, job_table

FAST = TimingPolicy(warmup=1, min_repeats=5, max_repeats=10, budget_s=0.01)
FAST_PLAN = ProfilePlan(block_timing=FAST, network_timing=FAST, calibration_samples=20)
ANCHOR = TimingPolicy(warmup=2, min_repeats=10, max_repeats=50, budget_s=0.05)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> LatencyTable:
    """A complete torch table for single_path tiny (the space with the fewest blocks)."""
    out = tmp_path_factory.mktemp("anchor") / "single_path_tiny_torch.json"
    space = search_spaces.get("single_path", preset="tiny")
    return profile(space, builtin_devices()["host-cpu-torch"], FAST_PLAN, out)


def _slowed(table: LatencyTable, factor: float) -> LatencyTable:
    """``table`` predicting ``factor`` times its latencies (its calibration scaled)."""
    calibration = table.calibration
    assert calibration is not None
    scaled = calibration.model_copy(
        update={
            "slope": calibration.slope * factor,
            "intercept_ms": calibration.intercept_ms * factor,
            "per_block_ms": calibration.per_block_ms * factor,
        }
    )
    return table.model_copy(update={"calibration": scaled})


def test_fit_scale_is_the_median_ratio_and_ignores_one_outlier() -> None:
    predicted = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    measured = 1.25 * predicted
    measured[2] = 40.0  # one network whose memory landed badly
    scale, spread = fit_scale(predicted, measured)
    assert scale == pytest.approx(1.25)
    assert spread == pytest.approx(0.0)
    with pytest.raises(ValueError, match="positive"):
        fit_scale([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        fit_scale([], [])
    with pytest.raises(ValueError, match="equal length"):
        fit_scale([1.0], [1.0, 2.0])


def test_anchor_networks_span_the_calibration_range(table: LatencyTable) -> None:
    space = search_spaces.get(table.space, preset=table.preset)
    picked = anchor_archs(table, space, 5)
    sums = sorted(p.block_sum_ms for p in table.calibration_points)
    predictor = LatencyPredictor(table, space, calibrated=False)
    got = predictor.block_sums(picked)
    assert len(picked) == 5
    assert got[0] == pytest.approx(sums[0]) and got[-1] == pytest.approx(sums[-1])
    assert np.all(np.diff(got) >= 0)
    assert len(anchor_archs(table, space, 1000)) == len(table.calibration_points)
    with pytest.raises(ValueError, match="count"):
        anchor_archs(table, space, 0)


def test_reanchoring_recovers_an_injected_scale_from_measured_networks(
    table: LatencyTable,
) -> None:
    """A table that predicts half of what it measured needs about twice the scale of the
    table itself; both anchors are timed back to back on the same networks."""
    same = measure_anchor(table, networks=6, timing=ANCHOR)
    halved = measure_anchor(_slowed(table, 0.5), networks=6, timing=ANCHOR)
    assert halved.archs == same.archs
    np.testing.assert_allclose(halved.predicted_ms, 0.5 * np.array(same.predicted_ms))
    assert 1.5 <= halved.scale / same.scale <= 2.6
    assert halved.scale == pytest.approx(
        float(np.median(np.array(halved.measured_ms) / np.array(halved.predicted_ms)))
    )
    assert (now() - halved.measured_at) < timedelta(minutes=5)


def test_an_anchor_scales_every_prediction_and_survives_json(
    table: LatencyTable, tmp_path: Path
) -> None:
    space = search_spaces.get(table.space, preset=table.preset)
    anchor = measure_anchor(table, networks=3, timing=ANCHOR)
    anchored = with_anchor(table, anchor)
    archs = sample_archs(space, 50, np.random.default_rng(3), table.resolutions)
    bare = LatencyPredictor(table, space).predict(archs)
    np.testing.assert_allclose(
        LatencyPredictor(anchored, space).predict(archs), anchor.scale * bare, rtol=1e-12
    )
    write_table(anchored, tmp_path / "t.json")
    again = read_table(tmp_path / "t.json")
    assert again.anchor == anchor
    assert unanchored(again).anchor is None
    assert "x" in anchor.describe() and "3 networks" in anchor.describe()
    with pytest.raises(ValueError, match="one figure per network"):
        Anchor.model_validate({**anchor.model_dump(), "measured_ms": [1.0]})
    flipped = "min" if table.statistic == "median" else "median"
    other = table.model_copy(update={"statistic": flipped})
    with pytest.raises(ValueError, match="statistic"):
        with_anchor(other, anchor)


def test_validating_an_anchored_table_measures_the_machine_as_it_is(
    table: LatencyTable,
) -> None:
    """Without a drift reference: an anchored table's predictions are the present level, so
    the measurements are not scaled back to the table's start."""
    anchored = with_anchor(table, measure_anchor(table, networks=3, timing=ANCHOR))
    result = validate(anchored, 4, timing=FAST)
    space = search_spaces.get(table.space, preset=table.preset)
    archs = [space.arch_from_dict(a) for a in result.archs]
    np.testing.assert_allclose(result.predicted_ms, LatencyPredictor(anchored).predict(archs))
    assert len(result.measured_ms) == 4 and min(result.measured_ms) > 0


def test_validate_reanchors_on_networks_timed_beside_the_subnets(table: LatencyTable) -> None:
    """A table predicting half of what it measured is brought back to the measured level by
    the anchor networks timed in the validation's own group."""
    halved = _slowed(table, 0.5)
    result = validate(halved, 6, timing=FAST, anchor=3)
    assert result.anchor is not None and len(result.anchor.archs) == 3
    calibration = [p.arch for p in table.calibration_points]
    assert all(arch in calibration for arch in result.anchor.archs)
    space = search_spaces.get(table.space, preset=table.preset)
    archs = [space.arch_from_dict(a) for a in result.archs]
    bare = LatencyPredictor(halved, space).predict(archs)
    np.testing.assert_allclose(result.predicted_ms, result.anchor.scale * bare, rtol=1e-12)
    # the anchor is fitted on the halved table's predictions of its networks (the injected
    # halving), against their times in the validation's own group; no level is compared
    # across groups: on a shared VM the same networks timed 0.5 s apart differed by 1.5x
    anchors = [space.arch_from_dict(a) for a in result.anchor.archs]
    np.testing.assert_allclose(
        result.anchor.predicted_ms, 0.5 * LatencyPredictor(table, space).predict(anchors)
    )
    ratios = np.array(result.anchor.measured_ms) / np.array(result.anchor.predicted_ms)
    assert result.anchor.scale == pytest.approx(float(np.median(ratios)))
    # and brings the halved table to the level measured beside it
    measured = np.array(result.measured_ms)
    assert 0.6 <= np.median(measured / np.array(result.predicted_ms)) <= 1.6
    with pytest.raises(ValueError, match="anchor"):
        validate(table, 4, anchor=-1)


def test_networks_timed_as_several_copies_keep_the_middle_one(table: LatencyTable) -> None:
    space = search_spaces.get(table.space, preset=table.preset)
    archs = sample_archs(space, 2, np.random.default_rng(4), table.resolutions)
    profiler = Profiler(table.device)
    supernet = space.build_supernet().eval()
    found = profiler.measure_networks(space, supernet, archs, FAST, copies=3)
    assert len(found) == 2 and all(m.min_ms > 0 for m in found)
    with pytest.raises(ValueError, match="copies"):
        profiler.measure_networks(space, supernet, archs, FAST, copies=0)


def test_host_table_is_reanchored_when_taken_and_logs_it(
    table: LatencyTable, tmp_path: Path
) -> None:
    path = host_table_path(tmp_path, "host-cpu-torch", "single_path", "tiny", 10, 3)
    write_table(table, path)  # as if profiled by an earlier job (profiling is tested elsewhere)
    first = host_table(tmp_path, "host-cpu-torch", "single_path", "tiny")
    assert first.anchor is not None and first.complete
    log = anchor_log_path(path)
    assert len(log.read_text().splitlines()) == 1
    assert read_table(path).anchor == first.anchor  # kept in the cached table
    again = host_table(tmp_path, "host-cpu-torch", "single_path", "tiny")
    assert again.anchor == first.anchor  # young enough: not timed again
    fresh = host_table(tmp_path, "host-cpu-torch", "single_path", "tiny", anchor_max_age_s=0)
    assert fresh.anchor is not None and fresh.anchor.measured_at > first.anchor.measured_at
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["scale"] for entry in logged] == [first.anchor.scale, fresh.anchor.scale]
    kept = host_table(tmp_path, "host-cpu-torch", "single_path", "tiny", anchor_max_age_s=None)
    assert kept.anchor == fresh.anchor
    job = job_table(tmp_path / "job", tmp_path, "host-cpu-torch", "single_path", "tiny")
    assert job.anchor == fresh.anchor
    with pytest.raises(ValueError, match="anchor_max_age_s"):
        host_table(tmp_path, "host-cpu-torch", "single_path", "tiny", anchor_max_age_s=-1)


def test_a_table_sized_for_other_data_is_reanchored_with_its_own_space(tmp_path: Path) -> None:
    """A digits job's table (1 channel) re-anchored later: the anchor networks are built for
    its own stem, not the preset's 3 channels (that raised MissingEntryError)."""
    space = search_spaces.get("single_path", preset="tiny", in_channels=1, num_classes=10)
    path = host_table_path(tmp_path, "host-cpu-torch", "single_path", "tiny", 10, 1)
    profile(space, builtin_devices()["host-cpu-torch"], FAST_PLAN, path)
    fresh = host_table(
        tmp_path,
        "host-cpu-torch",
        "single_path",
        "tiny",
        num_classes=10,
        in_channels=1,
        anchor_max_age_s=0,
    )
    assert fresh.anchor is not None and len(anchor_log_path(path).read_text().splitlines()) == 1


def test_a_registered_devices_table_is_used_as_uploaded(
    table: LatencyTable, tmp_path: Path
) -> None:
    board = table.device.model_copy(update={"name": "board-1"})
    uploaded = table.model_copy(update={"device": board})
    write_table(uploaded, tmp_path / "job" / "tables" / "board-1.json")
    got = job_table(tmp_path / "job", tmp_path, "board-1", "single_path", "tiny")
    assert got.anchor is None
    assert got.model_dump() == uploaded.model_dump()
    assert not list(tmp_path.glob("tables/*.anchors.jsonl"))


def test_fidelity_benchmark_validates_kept_tables_again_and_prints_both_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with ``--tables`` does not profile again; it appends its row to the kept
    validations and prints the fresh row beside its own."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "latency_fidelity.py"
    spec = importlib.util.spec_from_file_location("_bench_latency_fidelity", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    args = ["--spaces", "single_path", "--runtimes", "torch", "--samples", "3",
            "--calibration", "20", "--anchors", "2", "--warmup", "1", "--min-repeats", "5",
            "--block-budget", "0.005", "--network-budget", "0.01", "--batch", "100",
            "--tables", str(tmp_path)]  # fmt: skip
    bench.main(args)
    profiled = (tmp_path / "single_path-tiny-torch.json").stat().st_mtime_ns
    bench.main(args)
    out = capsys.readouterr().out
    assert (tmp_path / "single_path-tiny-torch.json").stat().st_mtime_ns == profiled
    rows = bench.Rows.model_validate_json(
        (tmp_path / "single_path-tiny-torch.validation.json").read_text()
    ).rows
    assert [row.run for row in rows] == ["fresh", "rerun"]
    assert rows[0].profile_s is not None and rows[1].profile_s is None
    assert all(row.noise.samples == 3 and row.anchor_scale > 0 for row in rows)
    kept = out.split("Every validation kept")[-1]
    assert "| single_path | torch | median | fresh |" in kept
    assert "| single_path | torch | median | rerun |" in kept
