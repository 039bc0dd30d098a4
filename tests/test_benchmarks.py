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
