"""Smoke tests of the benchmark scripts' measuring code (their tables are run by hand)."""

from __future__ import annotations

import importlib.util
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
