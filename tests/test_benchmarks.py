"""Smoke tests of the benchmark scripts' measuring code (their tables are run by hand)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import search_spaces

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["ofa_mbv3", "bignas"])
def test_presliced_floor_serves_parameter_slices_and_computes_the_rest(name: str) -> None:
    """The floor model gives the same outputs as the supernet, precomputes only slices of
    parameters (Once-for-All's transformed kernels stay in the graph, so their matrices still
    learn), and its steps run."""
    overhead = _load("supernet_overhead")
    space = search_spaces.get(name, preset="tiny")
    arch = space.sample(np.random.default_rng(0), "min")
    torch.manual_seed(0)
    supernet = space.build_supernet().eval()  # eval: no dropout, fixed BN, comparable outputs
    supernet.set_active(arch)
    x = torch.randn(2, space.in_channels, arch.resolution, arch.resolution)
    floor = overhead.Presliced(supernet, x)
    assert floor.slices and all(
        slice_.is_leaf and slice_.requires_grad for slice_ in floor.slices.values()
    )
    params = {id(p) for p in supernet.parameters()}
    assert {key[0] for key in floor.slices} <= params
    expected = supernet(x)
    with floor._serving():
        served = supernet(x)
        served.sum().backward()
    assert torch.allclose(served, expected, atol=1e-6)
    transforms = [p for n, p in supernet.named_parameters() if "kernel_transforms" in n]
    assert (name == "ofa_mbv3") == any(p.grad is not None for p in transforms)
    seconds = floor.step()()
    assert seconds > 0


def test_data_pipeline_quick_prints_the_memory_and_throughput_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--quick``: writes the synthetic ImageFolders, measures both sizes' process trees and
    the loader against the training step, prints the ratios the targets are read from, and
    leaves this process's torch threads as it found them."""
    pipeline = _load("data_pipeline")
    threads = torch.get_num_threads()
    pipeline.main(["--quick", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads
    assert "peak RSS 100/50: tree" in out
    for workers in (0, 1, 2):
        assert f"| loader, {workers} workers |" in out
    assert "loader with 2 workers / step:" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 50 |", "| 100 |"))]
    assert len(rows) == 2
    assert all(float(row.split("|")[9]) > 0 for row in rows)  # tree RSS peak MB
    name, _ = pipeline.imagefolder(tmp_path, 50, size=96)  # cached: reused, not rewritten
    assert name == "jpeg96-50" and "wrote" not in capsys.readouterr().out
    assert len(list((tmp_path / name).rglob("*.jpg"))) == 50


def test_gpu_check_without_a_gpu_prints_one_line_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_check = _load("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out == "no CUDA device: nothing to check\n"


def test_gpu_check_training_check_runs_on_cpu(tmp_path: Path) -> None:
    """Check (a) of ``--cpu-dry-run`` (the whole dry run takes minutes, Ray Train most of them):
    the stem probe sees float32 NCHW on the CPU, which is what the check expects there."""
    gpu_check = _load("gpu_check")
    args = gpu_check.argparse.Namespace(batch=8, steps=1, subnets=8, workdir=tmp_path)
    setting = gpu_check.Setting(True, args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two shared cores run many times slower
    try:
        ok, result, figure = gpu_check.check_training_steps(setting, "ofa_mbv3")
    finally:
        torch.set_num_threads(threads)
    assert ok, result
    assert result.startswith("bf16 off, channels_last off")
    assert "img/s" in figure


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("NAS_BENCHMARK_SMOKE") != "1",
    reason="90-120 s of Ray Tune trials, over what the 20-minute suite can spend on one "
    "benchmark's smoke run; run it with NAS_BENCHMARK_SMOKE=1",
)
def test_finetune_gain_quick_prints_a_row_per_budget_and_the_three_targets(
    fashion_mnist_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--quick`` (a supernet on 400 images, two recipes a subnet on a local Ray Tune, the
    scratch runs in two processes): a row per MACs budget whose figures agree with each other,
    then each target met or missed."""
    # by its package name: its scratch runs are functions of it that spawned processes import
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    gain = importlib.import_module("benchmarks.finetune_gain")
    threads = torch.get_num_threads()
    gain.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads
    assert "val 300 from its test split" in out and "load average at end:" in out
    header = (
        "| budget MACs | arch | MACs | holdout % | inherited % | fine-tuned % (epochs) | "
        "scratch % (1 + ft epochs) | gain | ft - scratch | fine-tune s | scratch s |"
    )
    assert header in out
    cells = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")]
    rows = [row for row in cells if row[0].endswith("M")]
    assert len(rows) == 3
    budgets = [float(row[0].rstrip("M")) for row in rows]
    assert budgets == sorted(budgets) and len(set(budgets)) == 3
    for budget, _, macs, holdout, inherited, tuned, scratch, gained, margin, *times in rows:
        assert float(macs.rstrip("M")) <= float(budget.rstrip("M"))
        tuned_mean, tuned_epochs = float(tuned.split()[0]), int(tuned.split("(")[1].rstrip(")"))
        scratch_mean, _, scratch_std, scratch_epochs = scratch.split()  # two seeds: mean ± std
        assert 1 <= tuned_epochs <= 2 and scratch_epochs == f"({1 + tuned_epochs})"
        assert float(scratch_std) >= 0
        for figure in (holdout, inherited, tuned_mean, scratch_mean):
            assert 0.0 <= float(figure) <= 100.0
        assert float(gained) == pytest.approx(tuned_mean - float(inherited), abs=0.011)
        assert float(margin) == pytest.approx(tuned_mean - float(scratch_mean), abs=0.011)
        assert all(float(cell.rstrip("*")) >= 0 for cell in times)
    targets = [line for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert [line[:2] for line in targets] == ["1.", "2.", "3."]
    assert all(line.endswith((": met", ": MISSED")) for line in targets[:2])
    asha = re.search(r"ran (\d+) of (\d+) .*: (met|MISSED); .* \((\d+)\): \d+%$", targets[2])
    assert asha is not None, targets[2]
    ran, to_end, _, ceiling = asha.groups()
    assert 0 < int(ran) <= int(to_end) <= int(ceiling)
