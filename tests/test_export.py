"""nas.export: ONNX (onnxruntime), TorchScript and the pytorch zip reproduce the torch logits of
a random subnet cut out of a supernet; files match their records; bad zips and bad arguments are
refused naming the problem."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.export import (
    FORMATS,
    MEDIA_TYPES,
    ExportedFile,
    ExportError,
    ExportFormat,
    SubnetPackageError,
    export_subnet,
    load_subnet,
    read_manifest,
)
from nas.training.bn import recalibrate_bn

SPACES = ["ofa_mbv3", "nasnet"]
DIGITS = DatasetSpec(kind="digits")


@dataclass
class Exported:
    space: search_spaces.SearchSpace
    arch: Any
    model: nn.Module
    files: dict[ExportFormat, ExportedFile]
    out_dir: Path


def _trained_like_subnet(name: str, seed: int) -> tuple[search_spaces.SearchSpace, Any, nn.Module]:
    """A random subnet of a supernet with perturbed weights and recalibrated BN: logits of
    order 1 (a fresh supernet's are ~1e-10, which would make any tolerance pass)."""
    space = search_spaces.get(name, preset="tiny")
    supernet = space.build_supernet()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in supernet.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    arch = space.sample(np.random.default_rng(seed))
    side = arch.resolution
    batches = [
        (torch.randn(8, space.in_channels, side, side, generator=generator), torch.zeros(8))
        for _ in range(2)
    ]
    recalibrate_bn(supernet, arch, batches, num_batches=2)
    return space, arch, space.extract(supernet, arch).eval()


def _export(tmp: Path, name: str, **kwargs: Any) -> Exported:
    space, arch, model = _trained_like_subnet(name, seed=1)
    files = export_subnet(
        model,
        arch=arch.model_dump(mode="json"),
        space=name,
        preset="tiny",
        resolution=arch.resolution,
        in_channels=space.in_channels,
        num_classes=space.num_classes,
        out_dir=tmp,
        **kwargs,
    )
    return Exported(space, arch, model, dict(files), tmp)


@pytest.fixture(scope="module", params=SPACES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return _export(tmp_path_factory.mktemp(request.param), request.param, metadata={"job": 7})


@pytest.fixture(scope="module")
def ofa_zip(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return _export(
        tmp_path_factory.mktemp("ofa_zip"), "ofa_mbv3", formats=["pytorch"], dataset=DIGITS
    )


def _inputs(exported: Exported, batch: int) -> torch.Tensor:
    side = exported.arch.resolution
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, exported.space.in_channels, side, side, generator=generator)


def _within_export_tolerance(got: np.ndarray, expected: np.ndarray) -> bool:
    """The exporter's own criterion: 1e-4, relative to the largest logit once it exceeds 1
    (float32 keeps ~7 digits: logits of 50 differ by 1e-4 after a few dozen layers)."""
    return float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def _torch_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


# --- the three formats reproduce the torch logits ----------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_gives_the_torch_logits(exported: Exported, batch: int) -> None:
    session = onnxruntime.InferenceSession(
        str(exported.files["onnx"].path), providers=["CPUExecutionProvider"]
    )
    (model_input,) = session.get_inputs()
    assert model_input.name == "input" and model_input.shape[0] == "batch"
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = _inputs(exported, batch)
    expected = _torch_logits(exported.model, x)
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == (batch, exported.space.num_classes)
    assert np.abs(expected).max() > 0.1  # a meaningful comparison, not two near-zero arrays
    assert _within_export_tolerance(got, expected)


def test_onnx_file_carries_the_manifest(exported: Exported) -> None:
    props = {p.key: p.value for p in onnx.load(exported.files["onnx"].path).metadata_props}
    manifest = json.loads(props["nas.manifest"])
    assert manifest["arch_id"] == exported.space.arch_id(exported.arch)
    assert manifest["metadata"] == {"job": 7}


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("batch", [1, 3])
def test_torchscript_gives_the_torch_logits(exported: Exported, batch: int) -> None:
    extra = {"arch.json": ""}
    scripted = torch.jit.load(str(exported.files["torchscript"].path), _extra_files=extra)
    x = _inputs(exported, batch)
    expected = _torch_logits(exported.model, x)
    got = _torch_logits(scripted, x)
    assert np.abs(got - expected).max() <= 1e-5
    assert json.loads(extra["arch.json"])["arch"] == exported.arch.model_dump(mode="json")


def test_zip_round_trips_through_load_subnet(exported: Exported) -> None:
    path = exported.files["pytorch"].path
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["arch.json", "load.py", "weights.pt"]
        assert "from nas.export import load_subnet" in zf.read("load.py").decode()
        weights = torch.load(io.BytesIO(zf.read("weights.pt")), weights_only=True)
    loaded = load_subnet(path)
    assert not loaded.training
    assert type(loaded) is type(exported.model)
    assert weights.keys() == exported.model.state_dict().keys()
    x = _inputs(exported, 3)
    np.testing.assert_array_equal(_torch_logits(loaded, x), _torch_logits(exported.model, x))
    manifest = read_manifest(path)
    assert (manifest.space, manifest.preset) == (exported.space.name, "tiny")
    assert manifest.arch_id == exported.space.arch_id(exported.arch)
    assert manifest.resolution == exported.arch.resolution
    assert (manifest.in_channels, manifest.num_classes) == (3, exported.space.num_classes)
    assert manifest.metadata == {"job": 7}


def test_exported_files_match_their_records(exported: Exported) -> None:
    assert list(exported.files) == list(FORMATS)
    names = {"onnx": "subnet.onnx", "torchscript": "subnet.torchscript.pt", "pytorch": "subnet.zip"}
    for fmt, record in exported.files.items():
        data = record.path.read_bytes()
        assert record.format == fmt and record.path.name == names[fmt]
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        assert record.size_bytes == len(data) == record.path.stat().st_size
        assert record.media_type == MEDIA_TYPES[fmt]
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in exported.out_dir.iterdir()) == sorted(names.values())


def test_the_recorded_normalization_reproduces_the_dataset_inputs(ofa_zip: Exported) -> None:
    manifest = read_manifest(ofa_zip.files["pytorch"].path)
    assert manifest.dataset == DIGITS.model_dump(mode="json")
    norm = manifest.normalization
    assert norm is not None
    val = load_dataset(DIGITS).val
    x, _ = val[0]
    pixels = val.source.image(int(val.indices[0])).float()
    mean = torch.tensor(norm.mean).view(-1, 1, 1)
    std = torch.tensor(norm.std).view(-1, 1, 1)
    torch.testing.assert_close((pixels / norm.pixel_scale - mean) / std, x)


# --- bad zips ------------------------------------------------------------------------------------
def _rewrite(src: Path, dst: Path, members: dict[str, bytes | None]) -> Path:
    """A copy of zip ``src`` with ``members`` replaced (``None``: removed)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name not in members:
                new.writestr(name, old.read(name))
        for name, data in members.items():
            if data is not None:
                new.writestr(name, data)
    return dst


def _manifest_with(src: Path, **changes: Any) -> bytes:
    with zipfile.ZipFile(src) as zf:
        data = json.loads(zf.read("arch.json"))
    for key, value in changes.items():
        if key.startswith("arch."):
            data["arch"][key.removeprefix("arch.")] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


def _weights(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _state(src: Path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(src) as zf:
        return torch.load(io.BytesIO(zf.read("weights.pt")), weights_only=True)


BAD_ZIPS: dict[str, tuple[Callable[[Path], dict[str, bytes | None]], str]] = {
    "missing arch.json": (lambda z: {"arch.json": None}, r"missing member 'arch\.json'"),
    "missing weights": (lambda z: {"weights.pt": None}, r"missing member 'weights\.pt'"),
    "bad json": (lambda z: {"arch.json": b'{"space": '}, r"arch\.json is not valid JSON"),
    "json list": (lambda z: {"arch.json": b"[1]"}, r"must hold a JSON object"),
    "no arch_id": (
        lambda z: {"arch.json": _manifest_with(z, arch_id=None)},
        r"arch\.json: arch_id: ",
    ),
    "newer format": (
        lambda z: {"arch.json": _manifest_with(z, format_version=2)},
        r"format_version",
    ),
    "unknown space": (
        lambda z: {"arch.json": _manifest_with(z, space="nope")},
        r"unknown search space 'nope'; allowed values",
    ),
    "unknown preset": (
        lambda z: {"arch.json": _manifest_with(z, preset="huge")},
        r"unknown preset 'huge'",
    ),
    "bad kernel": (
        lambda z: {"arch.json": _manifest_with(z, **{"arch.kernel": [4] * 20})},
        r"arch\.json: arch: kernel\[0\] = 4 is not allowed; allowed values",
    ),
    "arch_id mismatch": (
        lambda z: {"arch.json": _manifest_with(z, arch_id="0" * 16)},
        r"arch_id '0{16}' does not match the arch",
    ),
    "shape mismatch": (
        lambda z: {"arch.json": _manifest_with(z, num_classes=7)},
        r"weights\.pt does not fit the arch in arch\.json: .*size mismatch",
    ),
    "missing tensor": (
        lambda z: {"weights.pt": _weights(dict(list(_state(z).items())[1:]))},
        r"weights\.pt does not fit the arch in arch\.json: .*Missing key",
    ),
    "not torch": (lambda z: {"weights.pt": b"not a tensor file"}, r"not a torch state dict"),
    "code in pickle": (
        lambda z: {"weights.pt": _weights({"stem.0.weight": print})},  # type: ignore[dict-item]
        r"not a torch state dict",
    ),
    "not tensors": (
        lambda z: {"weights.pt": _weights({"stem.0.weight": [1, 2]})},
        r"dict of parameter names to tensors",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_bad_zips_are_refused_naming_the_problem(
    case: str, ofa_zip: Exported, tmp_path: Path
) -> None:
    change, message = BAD_ZIPS[case]
    good = ofa_zip.files["pytorch"].path
    bad = _rewrite(good, tmp_path / "bad.zip", change(good))
    with pytest.raises(SubnetPackageError, match=message) as info:
        load_subnet(bad)
    assert isinstance(info.value, ValueError) and str(info.value).startswith("bad.zip: ")


def test_a_file_that_is_no_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "subnet.zip"
    path.write_bytes(b"PK but not really")
    with pytest.raises(SubnetPackageError, match=r"subnet\.zip: not a zip archive"):
        load_subnet(path)


# --- bad export arguments ------------------------------------------------------------------------
class _FirstBatchOnly(nn.Module):
    """Eager-correct, but ``int(x.shape[0])`` becomes a constant in the ONNX graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[: int(x.shape[0])].reshape(int(x.shape[0]), -1)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_an_export_that_does_not_reproduce_the_logits_is_not_written(
    ofa_zip: Exported, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=r"onnx: exported model outputs \(1, 10\)"):
        export_subnet(
            _FirstBatchOnly(ofa_zip.model),
            arch=ofa_zip.arch.model_dump(mode="json"),
            space="ofa_mbv3",
            preset="tiny",
            resolution=ofa_zip.arch.resolution,
            in_channels=3,
            num_classes=10,
            out_dir=tmp_path,
            formats=["onnx"],
        )
    assert list(tmp_path.iterdir()) == []


BAD_ARGUMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown format": ({"formats": ["onnx", "tflite"]}, r"formats: unknown format 'tflite'"),
    "no format": ({"formats": []}, r"formats: give a non-empty list"),
    "twice": ({"formats": ["onnx", "onnx"]}, r"formats: 'onnx' given twice"),
    "path in stem": ({"stem": "../escape"}, r"stem: '\.\./escape'"),
    "unknown space": ({"space": "nope"}, r"unknown search space 'nope'; allowed values"),
    "unknown preset": ({"preset": "huge"}, r"unknown preset 'huge'"),
    "bad arch": ({"arch": {"resolution": 32}}, r"arch: not an arch of 'ofa_mbv3'"),
    "zero resolution": ({"resolution": 0}, r"resolution: must be a positive integer"),
    "wrong classes": ({"num_classes": 7}, r"num_classes: model outputs shape \(10,\)"),
    "wrong channels": ({"in_channels": 1}, r"model: fails on input of shape \(2, 1,"),
    "dataset channels": (
        {"dataset": DatasetSpec(kind="digits", channels=1)},
        r"dataset\.channels: 1 does not match in_channels 3",
    ),
    "metadata": ({"metadata": {"when": object()}}, r"metadata: must be JSON-serialisable"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_export_arguments_are_refused_naming_the_field(
    case: str, ofa_zip: Exported, tmp_path: Path
) -> None:
    changes, message = BAD_ARGUMENTS[case]
    arguments: dict[str, Any] = {
        "arch": ofa_zip.arch.model_dump(mode="json"),
        "space": "ofa_mbv3",
        "preset": "tiny",
        "resolution": ofa_zip.arch.resolution,
        "in_channels": 3,
        "num_classes": 10,
        "out_dir": tmp_path / "out",
        **changes,
    }
    with pytest.raises(ExportError, match=message):
        export_subnet(ofa_zip.model, **arguments)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# --- layering ------------------------------------------------------------------------------------
def test_nas_export_imports_neither_service_workers_nor_eager_torch() -> None:
    code = (
        "import sys, nas.export\n"
        "assert 'torch' not in sys.modules, 'torch imported by nas.export'\n"
        "from nas.export import export_subnet, load_subnet\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'workers'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
