"""Hardware awareness: devices, timing, exact block enumeration, tables, predictor, CLI.

Measurements here use tiny timing policies: they check that the machinery is right, not that
this shared machine is quiet (benchmarks/latency_fidelity.py measures fidelity properly).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from _counting import count_macs, count_params
from pydantic import ValidationError
from typer.testing import CliRunner

import search_spaces
from nas.hardware import (
    Device,
    DeviceNotFoundError,
    JsonDirectoryStore,
    LatencyPredictor,
    MissingEntryError,
    TableError,
    TimingPolicy,
    builtin_devices,
    check_table_for,
    decompose,
    measure,
    parse_table,
    read_table,
    write_table,
)
from nas.hardware import profile as profile_module
from nas.hardware.modules import block_input, build_block
from nas.hardware.profile import (
    ProfilePlan,
    fit_calibration,
    network_groups,
    profile,
    sample_archs,
    validate,
)
from nas.hardware.runtimes import OnnxRuntime, TorchRuntime, keep_freed_memory
from nas.hardware.table import CalibrationPoint, LatencyTable
from nas.hardware.timing import Measurement, measure_many
from nas.hardware.upload import UploadError, upload_table, upload_url
from search_spaces.blocks import block_cost
from service.cli import app

runner = CliRunner()
FAST = TimingPolicy(warmup=1, min_repeats=5, max_repeats=10, budget_s=0.01)
FAST_PLAN = ProfilePlan(block_timing=FAST, network_timing=FAST, calibration_samples=20)
FAST_CLI = ["--warmup", "1", "--min-repeats", "5", "--block-budget", "0.005",
            "--network-budget", "0.01"]  # fmt: skip


def text(result: object) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(result.output.split())  # type: ignore[attr-defined]


def tiny(name: str = "ofa_mbv3") -> search_spaces.SearchSpace:
    return search_spaces.get(name, preset="tiny")


@pytest.fixture(scope="module")
def host_table(tmp_path_factory: pytest.TempPathFactory) -> LatencyTable:
    """A complete torch table for ofa_mbv3 tiny at every resolution, measured on this host."""
    out = tmp_path_factory.mktemp("tables") / "ofa_tiny_torch.json"
    return profile(tiny(), builtin_devices()["host-cpu-torch"], FAST_PLAN, out)


# --- devices and timing ----------------------------------------------------------------------
def test_builtin_devices_are_the_host_on_both_runtimes() -> None:
    devices = builtin_devices()
    assert set(devices) == {"host-cpu-torch", "host-cpu-onnxruntime"}
    assert {d.runtime for d in devices.values()} == {"torch", "onnxruntime"}
    assert all(d.batch_size == 1 and d.threads == 1 and d.hardware for d in devices.values())


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": "Phone", "runtime": "torch"}, "name"),
        ({"name": "phone", "runtime": "tflite"}, "runtime"),
        ({"name": "phone", "runtime": "onnxruntime", "accelerator": "cuda"}, "accelerator"),
        ({"name": "phone", "runtime": "torch", "dtype": "float16"}, "dtype"),
        ({"name": "phone", "runtime": "torch", "threads": 0}, "threads"),
    ],
)
def test_device_rejects_bad_settings_naming_the_field(fields: dict, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        Device(**fields)
    assert named in str(info.value)


def test_measure_many_interleaves_and_drift_scaling_keeps_the_order() -> None:
    calls: list[str] = []
    policy = TimingPolicy(warmup=2, min_repeats=5, max_repeats=5, budget_s=1.0, min_sample_s=0)
    found = measure_many([lambda: calls.append("a"), lambda: calls.append("b")], policy)
    assert [m.repeats for m in found] == [5, 5]
    # warm-up and a first run each, then rounds of (untimed, timed) a, then b
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a", "a", "b", "b"] * 5
    slower = found[0].scaled(1.5)
    assert slower.min_ms == pytest.approx(1.5 * found[0].min_ms)
    assert slower.min_ms <= slower.median_ms <= slower.ci_high_ms


def test_measure_reports_median_spread_and_stops_on_budget() -> None:
    calls = []
    policy = TimingPolicy(warmup=3, min_repeats=5, max_repeats=50, budget_s=0.005, rel_ci=1e-9)
    result = measure(lambda: calls.append(sum(range(2000))), policy)
    assert 5 <= result.repeats <= 50
    assert result.min_ms <= result.ci_low_ms <= result.median_ms <= result.ci_high_ms
    assert result.iqr_ms >= 0 and len(calls) >= 3 + result.repeats


# --- exact enumeration -----------------------------------------------------------------------
@pytest.mark.parametrize("name", search_spaces.names())
def test_decomposition_reproduces_blocks_of_random_archs(name: str) -> None:
    """Term lookups give exactly ``blocks()`` (as a multiset), so enumeration is complete."""
    space = tiny(name)
    parts = decompose(space)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(60)] + [space.sample(rng, m) for m in ("min", "max")]
    ids = parts.key_ids(parts.features(archs))
    enumerated = {spec.key for spec in parts.distinct_blocks()}
    for arch, row in zip(archs, ids, strict=True):
        blocks = Counter(spec.key for spec in space.blocks(arch))
        assert Counter(parts.specs[i].key for i in row if i >= 0) == blocks
        assert set(blocks) <= enumerated


@pytest.mark.parametrize("name", search_spaces.names())
def test_block_modules_compute_what_the_spec_counts(name: str) -> None:
    space = tiny(name)
    specs = decompose(space).distinct_blocks()
    for spec in specs[:: max(1, len(specs) // 12)]:  # a first forward per shape is slow
        module = build_block(spec, space)
        x = block_input(spec, 2)
        macs, params = block_cost(spec)
        assert count_macs(module, x) == macs, spec.key
        assert count_params(module) == params, spec.key


# --- tables ----------------------------------------------------------------------------------
def test_host_table_covers_every_block_random_archs_produce(host_table: LatencyTable) -> None:
    space = tiny()
    assert host_table.complete and len(host_table.entries) == host_table.expected_entries
    assert host_table.resolutions == list(space.resolutions)
    assert host_table.software["torch"] == torch.__version__
    assert host_table.reference is not None and host_table.reference.min_ms > 0
    rng = np.random.default_rng(3)
    for _ in range(300):
        for spec in space.blocks(space.sample(rng)):
            entry = host_table.entries[spec.key]
            assert entry.median_ms >= entry.min_ms >= 0 and entry.repeats >= 5
    assert host_table.calibration is not None and host_table.calibration.samples >= 20


def test_vectorised_prediction_equals_the_per_arch_sum(host_table: LatencyTable) -> None:
    space = tiny()
    predictor = LatencyPredictor(host_table, space)
    archs = sample_archs(space, 400, np.random.default_rng(5), space.resolutions)
    sums = predictor.block_sums(archs)
    reference = np.array([predictor.reference_sum(a) for a in archs])
    np.testing.assert_allclose(sums, reference, rtol=1e-12, atol=1e-12)
    counts = np.array([len(space.blocks(a)) for a in archs])
    np.testing.assert_array_equal(predictor.block_counts(archs), counts)
    assert host_table.calibration is not None
    np.testing.assert_allclose(
        predictor.predict(archs), host_table.calibration.apply(reference, counts)
    )
    assert predictor.predict_one(archs[0]) == pytest.approx(float(predictor.predict(archs[:1])[0]))
    # a per-block term folds into the gathered values and still equals the formula
    calibration = host_table.calibration.model_copy(update={"per_block_ms": 0.013})
    folded = LatencyPredictor(host_table.model_copy(update={"calibration": calibration}), space)
    np.testing.assert_allclose(folded.predict(archs), calibration.apply(reference, counts))


def test_table_round_trips_through_json(host_table: LatencyTable, tmp_path: Path) -> None:
    path = tmp_path / "lut.json"
    write_table(host_table, path)
    again = read_table(path)
    assert again == host_table
    assert json.loads(path.read_text())["format_version"] == 1


def test_table_missing_an_entry_is_refused_naming_the_block(host_table: LatencyTable) -> None:
    space = tiny()
    arch = space.sample(np.random.default_rng(0))
    victim = space.blocks(arch)[3].key
    entries = {k: v for k, v in host_table.entries.items() if k != victim}
    holed = host_table.model_copy(update={"entries": entries})
    with pytest.raises(MissingEntryError, match=victim):
        LatencyPredictor(holed, space).predict([arch])


def test_table_for_another_space_or_preset_is_refused(host_table: LatencyTable) -> None:
    with pytest.raises(TableError, match="space 'ofa_mbv3' preset 'tiny', not space 'bignas'"):
        LatencyPredictor(host_table, tiny("bignas"))
    with pytest.raises(TableError, match="preset 'imagenet'"):
        check_table_for(host_table, "ofa_mbv3", "imagenet")
    stranger = tiny("bignas").sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="belongs to space='bignas'"):
        LatencyPredictor(host_table).predict([stranger])


def test_bad_table_files_are_refused_naming_the_problem(host_table: LatencyTable) -> None:
    with pytest.raises(TableError, match="not valid JSON"):
        parse_table('{"format_version": 1,')
    data = json.loads(host_table.model_dump_json())
    with pytest.raises(TableError, match="format_version 2"):
        parse_table(json.dumps({**data, "format_version": 2}))
    key = next(iter(data["entries"]))
    data["entries"][key]["median_ms"] = -1.0
    with pytest.raises(TableError, match=r"entries\..*median_ms"):
        parse_table(json.dumps(data))
    with pytest.raises(TableError, match="must be a JSON object"):
        parse_table("[]")


def test_resolution_outside_the_table_is_named(tmp_path: Path) -> None:
    space = tiny("single_path")
    plan = FAST_PLAN.model_copy(update={"resolutions": [32]})
    table = profile(space, builtin_devices()["host-cpu-torch"], plan, tmp_path / "sp.json")
    assert table.complete
    arch = space.sample(np.random.default_rng(0))
    assert LatencyPredictor(table, space).predict([arch]).shape == (1,)
    with pytest.raises(ValueError, match="resolutions"):
        decompose(space).distinct_blocks([24])


def _calibration_points(
    latency: Callable[[float, float], float], n: int = 30
) -> tuple[list[CalibrationPoint], list[float]]:
    """``n`` points with block sums 1..n and block counts cycling 10..16, measured as
    ``latency(sum, count)`` times a deterministic +-1% wobble."""
    points, counts = [], []
    for i in range(n):
        block_sum, count = float(i + 1), float(10 + (i * 3) % 7)
        value = latency(block_sum, count) * (1.0 + 0.01 * np.sin(7.0 * i))
        stats = Measurement(median_ms=value, iqr_ms=0.0, min_ms=value, ci_low_ms=value,
                            ci_high_ms=value, repeats=5)  # fmt: skip
        points.append(CalibrationPoint(arch={}, block_sum_ms=block_sum, measured=stats, macs=1))
        counts.append(count)
    return points, counts


def test_networks_are_timed_together_up_to_a_weight_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tiny preset's 100 validation networks form one interleaved group (timed apart, groups
    differ by the machine's speed between them); a smaller budget cuts in order, never empty."""
    space = search_spaces.get("ofa_mbv3", preset="tiny")
    archs = sample_archs(space, 100, np.random.default_rng(0), space.resolutions)
    assert network_groups(space, archs) == [archs]
    sizes = space.complexity_batch(archs)[1] * 4
    budget = int(sizes[:3].sum())
    monkeypatch.setattr(profile_module, "NETWORK_GROUP_BYTES", budget)
    groups = network_groups(space, archs)
    assert [a for group in groups for a in group] == archs
    assert len(groups) > 1
    start = 0
    for group in groups:
        weight = int(sizes[start : start + len(group)].sum())
        assert len(group) == 1 or weight <= budget
        start += len(group)
    monkeypatch.setattr(profile_module, "NETWORK_GROUP_BYTES", 1)
    assert [len(g) for g in network_groups(space, archs)] == [1] * 100
    assert network_groups(space, []) == []


def test_calibration_recovers_a_line_and_needs_20_networks() -> None:
    points, counts = _calibration_points(lambda s, c: 2.0 * s + 0.5)
    fitted = fit_calibration(points, counts, "median")
    assert fitted.per_block_ms == 0.0  # no per-block cost in the data: the term is left out
    assert fitted.slope == pytest.approx(2.0, rel=0.01)
    assert fitted.intercept_ms == pytest.approx(0.5, abs=0.2)
    assert fitted.r2 > 0.99 and fitted.loo_mape is not None and fitted.loo_mape < 0.02
    with pytest.raises(ValueError, match="at least 20"):
        fit_calibration(points[:19], counts[:19], "min")
    with pytest.raises(ValueError, match="blocks: 29 counts for 30"):
        fit_calibration(points, counts[:29], "min")


def test_calibration_takes_a_per_block_term_only_where_it_predicts_better() -> None:
    points, counts = _calibration_points(lambda s, c: 1.0 * s + 0.8 * c + 0.5)
    fitted = fit_calibration(points, counts, "min")
    assert fitted.per_block_ms == pytest.approx(0.8, rel=0.1)
    assert fitted.slope == pytest.approx(1.0, rel=0.05) and fitted.mape < 0.02
    line_only = fit_calibration(points, [12.0] * len(points), "min")  # counts carry nothing
    assert line_only.per_block_ms == 0.0 and line_only.mape > fitted.mape


# --- runtimes --------------------------------------------------------------------------------
def test_onnxruntime_and_torch_agree_on_an_exported_subnet() -> None:
    space = tiny()
    torch.manual_seed(0)
    supernet = space.build_supernet().eval()
    arch = space.sample(np.random.default_rng(11))
    net = space.extract(supernet, arch).eval()
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    devices = builtin_devices()
    expected = TorchRuntime(devices["host-cpu-torch"]).outputs(net, x)
    got = OnnxRuntime(devices["host-cpu-onnxruntime"]).outputs(net, x)
    assert got.shape == expected.shape == (2, space.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_onnxruntime_measures_blocks_net_of_call_overhead(tmp_path: Path) -> None:
    plan = FAST_PLAN.model_copy(update={"resolutions": [32], "max_entries": 4})
    out = tmp_path / "ort.json"
    table = profile(tiny(), builtin_devices()["host-cpu-onnxruntime"], plan, out)
    assert len(table.entries) == 4 and not table.complete
    assert "onnxruntime" in table.software and table.runtime == "onnxruntime"
    assert all(e.overhead_ms > 0 and e.median_ms >= 0 for e in table.entries.values())
    # no statistic in the plan: each runtime's own (sub-ms onnxruntime runs: the minimum)
    assert plan.statistic is None and table.statistic == "min"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_runtimes_keep_freed_memory_on_linux() -> None:
    assert keep_freed_memory()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runtime_synchronises() -> None:
    device = Device(name="gpu", runtime="torch", accelerator="cuda")
    run = TorchRuntime(device).prepare(torch.nn.Conv2d(3, 8, 3), torch.randn(1, 3, 32, 32))
    assert measure(run, FAST).median_ms > 0


# --- profile, resume, validate ---------------------------------------------------------------
def test_profile_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    space, device = tiny("proxyless"), builtin_devices()["host-cpu-torch"]
    out = tmp_path / "p.json"
    first = profile(space, device, FAST_PLAN.model_copy(update={"max_entries": 10}), out)
    kept = dict(first.entries)
    assert len(read_table(out).entries) == 10 and not read_table(out).complete
    done = profile(space, device, FAST_PLAN, out)
    assert done.complete and all(done.entries[k] == v for k, v in kept.items())
    with pytest.raises(TableError, match="another space"):
        profile(tiny("single_path"), device, FAST_PLAN, out)
    assert done.statistic == "median"  # torch's default
    moved = read_table(out)
    write_table(moved.model_copy(update={"software": {**moved.software, "cpu": "Other CPU"}}), out)
    with pytest.raises(TableError, match=r"\(cpu differ\)"):
        profile(space, device, FAST_PLAN, out)


def test_drift_reference_is_the_middle_copy() -> None:
    """One copy that runs fast (or slow) beside a group moves neither the baseline nor the
    factor: onnxruntime copies of one network differ by up to 25% with where memory lands."""
    copies = [Measurement(median_ms=m, iqr_ms=0.0, min_ms=m, ci_low_ms=m, ci_high_ms=m, repeats=5)
              for m in (1.49, 1.27, 1.47, 1.52, 1.46)]  # fmt: skip
    assert profile_module._middle(copies).min_ms == 1.47
    assert profile_module._middle(copies[:1]).min_ms == 1.49


def test_validate_scores_the_table_and_the_macs_proxy(host_table: LatencyTable) -> None:
    result = validate(host_table, 6, timing=FAST)
    assert len(result.measured_ms) == len(result.predicted_ms) == len(result.macs) == 6
    for fid in (result.table, result.macs_proxy):
        assert fid.samples == 6 and 0 <= fid.within_10pct <= 1 and -1 <= fid.kendall_tau <= 1


# --- store -----------------------------------------------------------------------------------
def test_directory_store_registers_devices_and_their_tables(
    host_table: LatencyTable, tmp_path: Path
) -> None:
    store = JsonDirectoryStore(tmp_path / "devices")
    phone = Device(name="pixel-7-cpu4", runtime="onnxruntime", threads=4, hardware="Tensor G2")
    store.register(phone)
    store.register(phone)  # the same device again: a no-op
    assert store.get("pixel-7-cpu4") == phone
    assert [d.name for d in store.devices()][-1] == "pixel-7-cpu4"
    with pytest.raises(ValueError, match="already registered"):
        store.register(phone.model_copy(update={"threads": 2}))
    with pytest.raises(ValueError, match="built-in"):
        store.register(Device(name="host-cpu-torch", runtime="torch"))
    with pytest.raises(DeviceNotFoundError, match="known devices"):
        store.get("nope")
    store.put_table(host_table)
    assert store.tables("host-cpu-torch") == [("ofa_mbv3", "tiny")]
    assert store.get_table("host-cpu-torch", "ofa_mbv3", "tiny") == host_table
    with pytest.raises(TableError, match="no latency table"):
        store.get_table("pixel-7-cpu4", "ofa_mbv3", "tiny")


# --- upload ----------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_upload_reports_an_unreachable_service(host_table: LatencyTable) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(UploadError, match="cannot reach"):
        upload_table(host_table, url, "t" * 20, timeout_s=5)


def test_upload_url_is_checked() -> None:
    assert upload_url("https://nas.example.org/", "phone") == (
        "https://nas.example.org/api/v1/devices/phone/latency-tables"
    )
    with pytest.raises(ValueError, match=r"url: .*https"):
        upload_url("http://nas.example.org", "phone")
    with pytest.raises(ValueError, match="url"):
        upload_url("ftp://x", "phone")


# --- CLI -------------------------------------------------------------------------------------
def test_cli_profile_resumes_then_validates(tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    base = ["device", "profile", "--space", "ofa_mbv3", "--preset", "tiny", "--runtime", "torch",
            "--resolution", "28", "--samples", "20", "--out", str(out), *FAST_CLI]  # fmt: skip
    first = runner.invoke(app, [*base, "--max-entries", "12"])
    assert first.exit_code == 0, first.output
    assert "12 of" in text(first) and len(read_table(out).entries) == 12
    second = runner.invoke(app, base)
    assert second.exit_code == 0, second.output
    assert read_table(out).complete and "calibration slope" in text(second)
    checked = runner.invoke(app, ["device", "validate", str(out), "--samples", "4",
                                  "--budget", "0.01", "--json"])  # fmt: skip
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.output[checked.output.index("{") :])
    assert report["table"]["samples"] == 4 and "macs_proxy" in report


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--runtime", "tflite"], "runtime"),
        (["--space", "nope"], "space"),
        (["--preset", "huge"], "preset"),
        (["--samples", "5"], "calibration_samples"),
        (["--resolution", "99"], "resolutions"),
        (["--statistic", "mean"], "statistic"),
        (["--device", "Bad Name"], "name"),
        (["--threads", "4"], "threads"),
        (["--upload", "https://nas.example.org"], "token"),
    ],
)
def test_cli_profile_bad_input_names_the_field(args: list[str], named: str, tmp_path: Path) -> None:
    base = {"--space": "ofa_mbv3", "--out": str(tmp_path / "x.json")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = runner.invoke(app, ["device", "profile", *[p for kv in base.items() for p in kv]])
    assert result.exit_code == 2, result.output
    assert named in text(result) and "Traceback" not in result.output
    assert not (tmp_path / "x.json").exists()


def test_cli_validate_and_upload_refuse_bad_tables(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("not json")
    result = runner.invoke(app, ["device", "validate", str(broken)])
    assert result.exit_code == 2 and "not valid JSON" in text(result)
    result = runner.invoke(app, ["device", "validate", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "cannot read" in text(result)
    result = runner.invoke(app, ["device", "upload", str(broken), "--url", "https://x.org",
                                 "--token", "t" * 20])  # fmt: skip
    assert result.exit_code == 2 and "not valid JSON" in text(result)


def test_cli_lists_builtin_devices() -> None:
    result = runner.invoke(app, ["device", "list"])
    assert result.exit_code == 0
    assert "host-cpu-torch" in result.output and "host-cpu-onnxruntime" in result.output


def test_hardware_package_imports_without_torch() -> None:
    code = "import sys, nas.hardware; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
