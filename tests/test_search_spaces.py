"""The search-space contract, run against every registered space and preset.

A new space gets every test here by being added to the registry. ImageNet presets run at their
smallest resolution with batch 2; the bulk runs on ``tiny``.
"""

from __future__ import annotations

import functools
import json
import pickle
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from _counting import count_macs, count_params, uncounted_parametrised_modules
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn

import search_spaces
from nas.ops import DynamicBatchNorm2d, ElasticKernelConv
from search_spaces import BlockSpec, Complexity, SearchSpace, get, names, presets
from search_spaces._docgen import DOC, render
from search_spaces.blocks import block_cost
from search_spaces.supernet import Supernet

SPACES = [(name, preset) for name in names() for preset in presets(name)]
SPACE_IDS = [f"{name}-{preset}" for name, preset in SPACES]
MODES = ["min", "max", "random"]
ATOL = 1e-5
#: Presets whose supernet is too big to build in CI (NASNet 6@4032: 1.9e9 one-shot weights,
#: 7.8 GB). The same code builds their smaller presets; the analytic tests still cover them.
NO_SUPERNET = {("nasnet", "imagenet_large")}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=SPACES, ids=SPACE_IDS)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    name, preset = request.param
    return get(name, preset=preset)


def _seed(space: SearchSpace, salt: int = 0) -> int:
    return sum(map(ord, f"{space.name}/{space.preset}")) * 1000 + salt


def _arch(space: SearchSpace, mode: str, salt: int = 0) -> Any:
    rng = np.random.default_rng(_seed(space, salt))
    return space.sample(rng, mode)  # type: ignore[arg-type]


def _input_size(space: SearchSpace, arch: Any) -> int:
    """The arch's resolution on small presets; the smallest one elsewhere (CPU budget)."""
    return arch.resolution if space.default_resolution <= 64 else min(space.resolutions)


@torch.no_grad()
def _randomise(net: nn.Module) -> None:
    """Non-trivial BN statistics and kernel transforms, so equality is not a coincidence."""
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, DynamicBatchNorm2d | nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.normal_(0.0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.normal_(1.0, 0.2, generator=generator)
            module.bias.normal_(0.0, 0.2, generator=generator)
        if isinstance(module, ElasticKernelConv):
            for matrix in module.kernel_transforms.values():
                matrix.add_(0.2 * torch.randn(matrix.shape, generator=generator))


@functools.cache
def _supernet(name: str, preset: str) -> Supernet:
    if (name, preset) in NO_SUPERNET:
        pytest.skip(f"the {name}/{preset} supernet is too big for CI")
    torch.manual_seed(0)
    net = get(name, preset=preset).build_supernet()
    _randomise(net)
    return net.eval()


def _x(space: SearchSpace, size: int, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, space.in_channels, size, size, generator=generator)


def _script(model: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit is deprecated, exports still rely on it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model)


# --- registry --------------------------------------------------------------------------------
def test_registry_lists_spaces_and_presets() -> None:
    assert {"ofa_mbv3", "bignas"} <= set(names())
    for name in names():
        assert {"tiny", "imagenet"} <= set(presets(name))
        assert get(name) is get(name, preset="tiny")  # cached, immutable


def test_registry_rejects_unknown_names_with_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"unknown search space 'nope'.*ofa_mbv3"):
        get("nope")
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*imagenet"):
        get("ofa_mbv3", preset="huge")
    with pytest.raises(ValueError, match="unknown search space"):
        presets("nope")


def test_importing_the_registry_and_describing_does_not_import_torch() -> None:
    code = (
        "import sys, search_spaces as s\n"
        "[s.get(n, preset=p).describe() for n in s.names() for p in s.presets(n)]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_num_classes_and_in_channels_follow_get() -> None:
    space = get("ofa_mbv3", preset="tiny", num_classes=7, in_channels=1)
    net = space.build_supernet().eval()
    arch = space.sample(np.random.default_rng(0))
    net.set_active(arch)
    out = net(torch.randn(2, 1, arch.resolution, arch.resolution))
    assert out.shape == (2, 7)
    specs = space.blocks(arch)
    assert specs[0].in_channels == 1 and specs[-1].out_channels == 7


# --- extraction ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_extracted_model_computes_what_the_supernet_computes(space: SearchSpace, mode: str) -> None:
    net = _supernet(space.name, space.preset)
    arch = _arch(space, mode)
    net.set_active(arch)
    static = space.extract(net, arch).eval()
    x = _x(space, _input_size(space, arch))
    with torch.no_grad():
        expected = net(x)
        got = static(x)
    assert expected.shape == (2, space.num_classes)
    assert expected.std() > 1e-3  # not a constant output
    assert (got - expected).abs().max().item() <= ATOL
    assert not any(isinstance(m, Supernet) for m in static.modules())


@pytest.mark.parametrize("mode", MODES)
def test_complexity_equals_hook_count_of_extracted_model(space: SearchSpace, mode: str) -> None:
    net = _supernet(space.name, space.preset)
    arch = _arch(space, mode)
    static = space.extract(net, arch).eval()
    size = _input_size(space, arch)
    assert uncounted_parametrised_modules(static) == []
    expected = Complexity(count_macs(static, _x(space, size)), count_params(static))
    assert space.complexity(arch, resolution=size) == expected


def test_extracted_model_scripts_and_runs_without_project_code(space: SearchSpace) -> None:
    net = _supernet(space.name, space.preset)
    arch = _arch(space, "random", salt=1)
    static = space.extract(net, arch).eval()
    scripted = _script(static)
    x = _x(space, _input_size(space, arch))
    net.set_active(arch)
    with torch.no_grad():
        assert (scripted(x) - net(x)).abs().max().item() <= ATOL
    modules = {type(m).__module__.split(".")[0] for m in static.modules()}
    assert modules <= {"torch", "search_spaces", "nas"}  # eager classes; scripted needs none


def test_extract_leaves_the_active_arch_alone() -> None:
    space = get("bignas")
    net = space.build_supernet()
    first, second = _arch(space, "random", 1), _arch(space, "random", 2)
    net.set_active(first)
    space.extract(net, second)
    assert net.active_arch == first


def test_supernet_forward_accepts_any_input_size() -> None:
    for name in names():
        net = get(name).build_supernet().eval()
        with torch.no_grad():
            for size in (16, 40):
                assert net(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_supernet_rejects_archs_of_other_spaces() -> None:
    net = get("ofa_mbv3").build_supernet()
    with pytest.raises(ValueError, match="belongs to space='bignas'"):
        net.set_active(get("bignas").sample(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="preset='imagenet'"):
        net.set_active(get("ofa_mbv3", preset="imagenet").sample(np.random.default_rng(0)))


def test_reorder_channels_keeps_the_largest_subnet() -> None:
    for name in names():
        space = get(name)
        torch.manual_seed(0)
        net = space.build_supernet()
        _randomise(net)
        net.eval()
        x = _x(space, max(space.resolutions))
        weights_before = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            before = net(x)
            net.reorder_channels()
            after = net(x)
        torch.testing.assert_close(after, before, rtol=1e-4, atol=ATOL)
        moved = [
            not torch.equal(a, b) for a, b in zip(weights_before, net.parameters(), strict=True)
        ]
        if getattr(net, "shrinks_channels", True):  # side-by-side ops or cells shrink nothing
            assert any(moved), "reorder_channels changed nothing"


# --- complexity ------------------------------------------------------------------------------
def test_complexity_is_the_sum_of_block_costs(space: SearchSpace) -> None:
    arch = _arch(space, "random")
    specs = space.blocks(arch)
    assert all(isinstance(s, BlockSpec) for s in specs)
    costs = [block_cost(s) for s in specs]
    total = Complexity(int(sum(c[0] for c in costs)), int(sum(c[1] for c in costs)))
    assert space.complexity(arch) == total
    searched = [s for s in specs if s.op not in ("conv", "conv_valid", "pool", "linear")]
    assert len({s.key for s in searched}) >= 1
    assert hash(specs[0]) == hash(BlockSpec(**specs[0].to_dict()))
    assert specs[0].input_size == arch.resolution


def test_complexity_batch_equals_complexity(space: SearchSpace) -> None:
    rng = np.random.default_rng(_seed(space))
    archs = [space.sample(rng) for _ in range(40)] + [_arch(space, "min"), _arch(space, "max")]
    for resolution in (None, space.default_resolution):
        macs, params = space.complexity_batch(archs, resolution=resolution)
        expected = [space.complexity(a, resolution) for a in archs]
        assert macs.tolist() == [c.macs for c in expected]
        assert params.tolist() == [c.params for c in expected]
        assert macs.dtype == np.int64


def test_min_and_max_bound_the_space(space: SearchSpace) -> None:
    rng = np.random.default_rng(_seed(space))
    archs = [space.sample(rng) for _ in range(200)]
    macs, params = space.complexity_batch(archs, resolution=space.default_resolution)
    summary = space.describe()
    assert summary.min_macs <= macs.min() and macs.max() <= summary.max_macs
    assert summary.min_params <= params.min() and params.max() <= summary.max_params
    refs = space.reference_archs()
    assert space.complexity(refs["min"]).macs == summary.macs_over_resolutions[0]
    assert space.complexity(refs["max"]).macs == summary.macs_over_resolutions[1]


def test_complexity_is_fast_enough_for_a_large_search() -> None:
    space = get("ofa_mbv3", preset="imagenet")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20_000)]
    start = time.process_time()  # CPU time: immune to other processes on a shared machine
    space.complexity_batch(archs)
    batch_rate = len(archs) / (time.process_time() - start)
    start = time.process_time()
    for arch in archs[:2000]:
        space.complexity(arch)
    single_rate = 2000 / (time.process_time() - start)
    assert batch_rate >= 20_000, f"complexity_batch: {batch_rate:.0f} archs/s"
    assert single_rate >= 2_000, f"complexity: {single_rate:.0f} archs/s"


# --- published anchors -----------------------------------------------------------------------
def test_once_for_all_anchors() -> None:
    from search_spaces import ofa_mbv3

    space = get("ofa_mbv3", preset="imagenet")
    refs = space.reference_archs()
    largest = space.complexity(refs["max"])
    assert largest.params == pytest.approx(ofa_mbv3.PUBLISHED_SUPERNET_PARAMS, rel=0.015)
    d4_e3_k3 = refs["d4_e3_k3"]
    assert d4_e3_k3.resolution == 224
    assert space.complexity(d4_e3_k3).macs == pytest.approx(
        ofa_mbv3.PUBLISHED_D4_E3_K3_MACS, rel=0.01
    )
    static = space.extract(_supernet("ofa_mbv3", "imagenet"), d4_e3_k3)
    assert count_macs(static, torch.zeros(1, 3, 224, 224)) == space.complexity(d4_e3_k3).macs


def test_bignas_published_models_lie_inside_the_space() -> None:
    from search_spaces import bignas

    space = get("bignas", preset="imagenet")
    low, high = space.describe().macs_over_resolutions
    published = bignas.PUBLISHED_MACS
    assert 150e6 <= low <= min(published.values())
    assert max(published.values()) <= high <= 2.5e9


# --- sampling and search operators -----------------------------------------------------------
def test_sampling_covers_every_choice(space: SearchSpace) -> None:
    rng = np.random.default_rng(_seed(space))
    choices = space.choices()
    seen: dict[str, list[set[int]]] = {
        field: [set() for _ in positions] for field, positions in choices.items()
    }
    for _ in range(300):
        data = space.sample(rng).to_dict()
        for field, positions in seen.items():
            values = data[field] if isinstance(data[field], list) else [data[field]]
            for position, value in enumerate(values):
                positions[position].add(value)
    for field, allowed_lists in choices.items():
        for position, allowed in enumerate(allowed_lists):
            assert seen[field][position] == set(allowed), f"{field}[{position}]"


def test_min_and_max_modes_pick_the_extreme_choices(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    for mode, pick in (("min", min), ("max", max)):
        arch = space.sample(rng, mode)  # type: ignore[arg-type]
        assert arch == space.reference_archs()[mode]
        data = arch.to_dict()
        extreme = {f: [pick(allowed) for allowed in p] for f, p in space.choices().items()}
        values = {f: data[f] if isinstance(data[f], list) else [data[f]] for f in extreme}
        if values != extreme:
            # Only where the extreme network is not made of extreme choices (NASNet's cells);
            # then it must be strictly smaller (larger) than the arch of extreme choices.
            naive = {f: v if isinstance(data[f], list) else v[0] for f, v in extreme.items()}
            got = space.complexity(arch).macs
            other = space.complexity(space.arch_from_dict(naive)).macs
            assert got < other if mode == "min" else got > other, (mode, got, other)
    with pytest.raises(ValueError, match="mode must be one of"):
        space.sample(rng, "median")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    space_index=st.integers(0, len(SPACES) - 1),
    seed=st.integers(0, 2**32 - 1),
    prob=st.floats(0.0, 1.0),
)
def test_mutate_and_crossover_return_valid_archs(space_index: int, seed: int, prob: float) -> None:
    name, preset = SPACES[space_index]
    space = get(name, preset=preset)
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    mutated = space.mutate(a, rng, prob)
    child = space.crossover(a, b, rng)
    for arch in (mutated, child):
        assert space.arch_from_dict(arch.to_dict()) == arch  # full validation passes
    if prob == 0.0:
        assert mutated == a
    da, db, dc = a.to_dict(), b.to_dict(), child.to_dict()
    for field in da:
        if isinstance(da[field], list):
            assert all(v in (x, y) for v, x, y in zip(dc[field], da[field], db[field], strict=True))


def test_mutate_rejects_bad_probabilities() -> None:
    space = get("ofa_mbv3")
    arch = _arch(space, "random")
    with pytest.raises(ValueError, match="prob must be in"):
        space.mutate(arch, np.random.default_rng(0), 1.5)


def test_mutate_with_prob_one_explores() -> None:
    space = get("ofa_mbv3")
    rng = np.random.default_rng(0)
    arch = _arch(space, "min")
    assert len({space.mutate(arch, rng, 1.0).id for _ in range(20)}) > 15


# --- ids, JSON, validation -------------------------------------------------------------------
def test_json_round_trip_keeps_arch_and_id(space: SearchSpace) -> None:
    for salt in range(5):
        arch = _arch(space, "random", salt)
        text = json.dumps(arch.to_dict())
        again = space.arch_from_dict(json.loads(text))
        assert again == arch and again.id == arch.id == space.arch_id(arch)
        assert type(arch).model_validate_json(text) == arch
        assert pickle.loads(pickle.dumps(arch)) == arch
        assert len(arch.id) == 16 and int(arch.id, 16) >= 0


def test_ids_are_equal_exactly_for_equal_networks(space: SearchSpace) -> None:
    rng = np.random.default_rng(_seed(space))
    archs = [space.sample(rng) for _ in range(100)]
    archs += [space.mutate(a, rng, 0.05) for a in archs]
    codes = space.encode_batch(archs)
    ids = [a.id for a in archs]
    for i in range(len(archs)):
        same_id = np.array([ids[i] == other for other in ids])
        same_code = (codes == codes[i]).all(axis=1)
        assert (same_id == same_code).all()
    assert len(set(ids)) > 150


def _with(data: dict[str, Any], field: str, position: int, value: int) -> dict[str, Any]:
    return {**data, field: [value if i == position else v for i, v in enumerate(data[field])]}


def _single_changes(space: SearchSpace, data: dict[str, Any]) -> Iterator[tuple[str, int, int]]:
    """Every (field, position, value) that changes one choice of the list fields of ``data``."""
    for field, positions in space.choices().items():
        if isinstance(data[field], list):
            for position, allowed in enumerate(positions):
                for value in allowed:
                    if value != data[field][position]:
                        yield field, position, value


def _ignored_choice(space: SearchSpace) -> tuple[dict[str, Any], tuple[str, int, int]]:
    """An arch (the smallest first) and a one-choice change its id ignores."""
    starts = [("min", 0), ("max", 0), *(("random", salt) for salt in range(10))]
    for mode, salt in starts:
        data = _arch(space, mode, salt).to_dict()
        arch_id = space.arch_from_dict(data).id
        for change in _single_changes(space, data):
            if space.arch_from_dict(_with(data, *change)).id == arch_id:
                return data, change
    raise AssertionError("no choice is ignored by the id")


def test_ids_ignore_choices_in_skipped_blocks(space: SearchSpace) -> None:
    """A choice that does not exist in the network (in a block elastic depth skips, a skipped
    layer's kernel, the concat bit of a loose end) changes neither the id nor the encoding, and
    some other single change (a deeper stage, a block reading the loose end) makes it count."""
    data, inert = _ignored_choice(space)
    shallow = space.arch_from_dict(data)
    changed = _with(data, *inert)
    shallow_changed = space.arch_from_dict(changed)
    assert shallow != shallow_changed and shallow.id == shallow_changed.id
    assert (space.encode(shallow) == space.encode(shallow_changed)).all()
    for deeper in _single_changes(space, data):
        if deeper[:2] == inert[:2]:
            continue
        deep = space.arch_from_dict(_with(data, *deeper))
        if deep.id != space.arch_from_dict(_with(changed, *deeper)).id:
            assert deep.id != shallow.id
            break
    else:
        raise AssertionError(f"{inert} never matters")


def test_ids_differ_between_presets() -> None:
    tiny, big = get("ofa_mbv3"), get("ofa_mbv3", preset="imagenet")
    data = tiny.sample(np.random.default_rng(0), "max").to_dict()
    data.pop("preset")
    data.pop("resolution")
    assert (
        tiny.arch_from_dict({**data, "resolution": 32}).id
        != big.arch_from_dict({**data, "resolution": 224}).id
    )


def _invalid(space: SearchSpace, field: str, position: int, value: Any) -> dict[str, Any]:
    data = _arch(space, "max").to_dict()
    if isinstance(data[field], list):
        data[field] = list(data[field])
        data[field][position] = value
    else:
        data[field] = value
    return data


def test_invalid_choices_name_the_field_and_the_allowed_values(space: SearchSpace) -> None:
    choices = space.choices()
    for field, positions in choices.items():
        position = min(3, len(positions) - 1)
        allowed = positions[position]
        bad = max(allowed) + 1
        where = field if field == "resolution" else rf"{field}\[{position}\]"
        message = (
            rf"{where} = {bad} is not allowed; allowed values: \[{', '.join(map(str, allowed))}\]"
        )
        with pytest.raises(ValidationError, match=message):
            space.arch_from_dict(_invalid(space, field, position, bad))


def test_invalid_shapes_and_keys_are_rejected(space: SearchSpace) -> None:
    data = _arch(space, "max").to_dict()
    lists = [f for f in space.choices() if isinstance(data[f], list)]
    field = "kernel" if "kernel" in lists else lists[0]
    short = {**data, field: data[field][:-1]}
    with pytest.raises(ValidationError, match=rf"{field} has {len(data[field]) - 1} entries"):
        space.arch_from_dict(short)
    with pytest.raises(ValidationError, match="colour"):
        space.arch_from_dict({**data, "colour": "red"})
    missing = "depth" if "depth" in data else lists[-1]
    with pytest.raises(ValidationError, match=missing):
        space.arch_from_dict({k: v for k, v in data.items() if k != missing})
    other = "imagenet" if space.preset == "tiny" else "tiny"
    with pytest.raises(ValueError, match="not space="):
        space.arch_from_dict({**data, "preset": other})


def test_archs_validate_on_construction() -> None:
    space = get("ofa_mbv3", preset="imagenet")
    data = space.reference_archs()["d4_e3_k3"].to_dict()
    arch_type = space.arch_type
    assert arch_type(**data) == space.arch_from_dict(data)
    with pytest.raises(ValidationError, match=r"kernel\[3\] = 9 is not allowed"):
        arch_type(**{**data, "kernel": [3, 3, 3, 9] + [3] * 16})
    with pytest.raises(ValidationError, match=r"depth\[0\] = 7"):
        arch_type(**{**data, "depth": [7, 4, 4, 4, 4]})
    with pytest.raises(ValidationError):  # frozen
        space.reference_archs()["max"].resolution = 128  # type: ignore[misc]


# --- encoding --------------------------------------------------------------------------------
def test_encode_batch_equals_stacked_encode(space: SearchSpace) -> None:
    rng = np.random.default_rng(_seed(space))
    archs = [space.sample(rng) for _ in range(30)]
    batch = space.encode_batch(archs)
    assert batch.dtype == np.float32 and batch.shape == (30, space.encoding_dim)
    assert (batch == np.stack([space.encode(a) for a in archs])).all()
    assert set(np.unique(batch)) <= {0.0, 1.0}
    assert space.encode_batch([]).shape == (0, space.encoding_dim)


# --- summary and docs ------------------------------------------------------------------------
def test_describe_counts_networks_exactly() -> None:
    summary = get("ofa_mbv3", preset="imagenet").describe()
    per_unit = sum((3 * 3) ** depth for depth in (2, 3, 4))  # kernel x expand per block
    assert summary.num_subnets == per_unit**5  # about 2e19, as the OFA paper says
    assert summary.num_subnets_with_resolution == per_unit**5 * 25
    for name, preset in SPACES:
        s = get(name, preset=preset).describe()
        assert s.num_subnets_with_resolution == s.num_subnets * len(s.resolutions)
        assert s.min_macs < s.max_macs and s.min_params < s.max_params
        json.loads(s.model_dump_json())


def test_docs_hold_the_computed_figures() -> None:
    text = DOC.read_text()
    for name, preset in SPACES:
        block = render(get(name, preset=preset))
        assert block in text, f"{name}/{preset}: run `python -m search_spaces._docgen`"


def test_package_exports() -> None:
    assert set(search_spaces.__all__) >= {"get", "names", "presets", "SearchSpace", "BlockSpec"}


def test_round_channels_matches_nas_ops() -> None:
    from nas.ops import DynamicSE, make_divisible
    from search_spaces._mbconv_config import round_channels, se_width

    for value in [*range(1, 400), 35.2, 134.4, 1152.0, 19.2]:
        assert round_channels(value) == make_divisible(value, 8)
    se = DynamicSE(max_channels=1024)
    for channels in range(8, 1025, 8):
        assert se_width(channels) == se.mid_channels(channels)
