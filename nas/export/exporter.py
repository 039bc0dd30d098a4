"""``export_subnet``: one static subnet to ONNX, TorchScript and the pytorch zip, each checked
against the torch model before it is written, each written atomically with its sha256.

Every file carries the same manifest (``arch.json``): inside the zip, as a TorchScript extra
file, and as ONNX metadata (``nas.manifest``), so a file that travels alone still says what
it is and how to feed it.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

import search_spaces
from nas import __version__
from nas.export.files import write_atomic
from nas.export.formats import (
    FORMATS,
    INPUT_NAME,
    MANIFEST_MEMBER,
    MEDIA_TYPES,
    OUTPUT_NAME,
    ExportedFile,
    ExportError,
    ExportFormat,
    InputNormalization,
    SubnetManifest,
    file_name,
)
from nas.export.onnx import export_onnx
from nas.export.package import load_subnet, package_bytes

if TYPE_CHECKING:
    from nas.data import DatasetSpec

ONNX_MANIFEST_KEY = "nas.manifest"
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CHECK_BATCH = 2  # not 1: the check also proves the batch axis is dynamic
_TOLERANCE = 1e-4  # on logits, relative to their largest magnitude once that exceeds 1


def _check_formats(formats: Sequence[str]) -> list[ExportFormat]:
    if isinstance(formats, str) or not formats:
        raise ExportError(f"formats: give a non-empty list; allowed values: {list(FORMATS)}")
    chosen: list[ExportFormat] = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ExportError(f"formats: unknown format {fmt!r}; allowed values: {list(FORMATS)}")
        if fmt in chosen:
            raise ExportError(f"formats: {fmt!r} given twice")
        chosen.append(fmt)  # type: ignore[arg-type]
    return chosen


def _manifest(
    *,
    arch: dict[str, Any],
    space: str,
    preset: str,
    resolution: int,
    in_channels: int,
    num_classes: int,
    dataset: DatasetSpec | None,
    metadata: dict[str, Any] | None,
) -> SubnetManifest:
    """Validate every argument that describes the subnet, naming the one at fault."""
    for name, value in (
        ("resolution", resolution),
        ("in_channels", in_channels),
        ("num_classes", num_classes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"{name}: must be a positive integer, got {value!r}")
    try:
        found = search_spaces.get(
            space, preset=preset, num_classes=num_classes, in_channels=in_channels
        )
        arch_obj = found.arch_from_dict(arch)
    except ValidationError as exc:
        raise ExportError(f"arch: not an arch of {space!r} preset {preset!r}: {exc}") from None
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    normalization = None
    if dataset is not None:
        from nas.data import input_normalization

        if dataset.channels != in_channels:
            raise ExportError(
                f"dataset.channels: {dataset.channels} does not match in_channels {in_channels}"
            )
        mean, std = input_normalization(dataset)
        normalization = InputNormalization(mean=list(mean), std=list(std))
    try:
        json.dumps(metadata or {})
    except (TypeError, ValueError) as exc:
        raise ExportError(f"metadata: must be JSON-serialisable ({exc})") from None
    return SubnetManifest(
        space=space,
        preset=preset,
        arch=arch_obj.model_dump(mode="json"),
        arch_id=found.arch_id(arch_obj),
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        normalization=normalization,
        dataset=dataset.model_dump(mode="json") if dataset is not None else None,
        nas_service_version=__version__,
        torch_version=torch.__version__,
        metadata=dict(metadata or {}),
    )


def _onnx_file(model: nn.Module, example: torch.Tensor, manifest_json: str) -> bytes:
    import onnx

    graph = onnx.load_from_string(
        export_onnx(model, example, dynamic_batch=True, output_name=OUTPUT_NAME)
    )
    onnx.helper.set_model_props(graph, {ONNX_MANIFEST_KEY: manifest_json})
    return graph.SerializeToString()


def _torchscript_file(model: nn.Module, manifest_json: str) -> bytes:
    # script, not trace: extract() promises scriptable models, scripting keeps every shape
    # dynamic without relying on one example, and it is ~10x faster than a checked trace.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript, yet it remains the format that C++ (libtorch)
        # and mobile runtimes load; the issue asks for it.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(
            torch.jit.script(model), buffer, _extra_files={MANIFEST_MEMBER: manifest_json}
        )
    return buffer.getvalue()


def _run_onnx(data: bytes, x: torch.Tensor) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def _run_torchscript(data: bytes, x: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu")(x).numpy()


def _run_package(data: bytes, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return load_subnet(io.BytesIO(data))(x).numpy()


_RUNNERS: dict[ExportFormat, Callable[[bytes, torch.Tensor], np.ndarray]] = {
    "onnx": _run_onnx,
    "torchscript": _run_torchscript,
    "pytorch": _run_package,
}


def _verify(fmt: ExportFormat, data: bytes, x: torch.Tensor, reference: np.ndarray) -> None:
    """Refuse to write a file whose runtime does not reproduce the torch logits."""
    got = _RUNNERS[fmt](data, x)
    if got.shape != reference.shape:
        raise ExportError(f"{fmt}: exported model outputs {got.shape}, torch {reference.shape}")
    diff = float(np.abs(got - reference).max())
    allowed = _TOLERANCE * max(1.0, float(np.abs(reference).max()))
    if not diff <= allowed:
        raise ExportError(
            f"{fmt}: exported model differs from the torch model by {diff:.3g} "
            f"(allowed {allowed:.3g})"
        )


def export_subnet(
    model: nn.Module,
    *,
    arch: dict[str, Any],
    space: str,
    preset: str,
    resolution: int,
    in_channels: int,
    num_classes: int,
    out_dir: Path,
    formats: Sequence[ExportFormat] = FORMATS,
    stem: str = "subnet",
    metadata: dict[str, Any] | None = None,
    dataset: DatasetSpec | None = None,
    verify: bool = True,
) -> dict[ExportFormat, ExportedFile]:
    """Write ``model`` (a static subnet from ``space.extract``) to ``out_dir`` in ``formats``.

    Files: ``{stem}.onnx`` (input ``"input"`` NCHW float32, output ``"logits"``, dynamic batch
    axis), ``{stem}.torchscript.pt`` and ``{stem}.zip`` (see ``load_subnet``). ``dataset``
    records the input normalization the subnet was trained with. With ``verify`` each file is
    run in its runtime on a random batch and must give the torch logits to 1e-4 (relative once
    they exceed 1) before it is written. ``model`` itself is not modified.
    """
    chosen = _check_formats(formats)
    if not isinstance(stem, str) or not _STEM.match(stem):
        raise ExportError(
            f"stem: {stem!r} must be 1-100 letters, digits, '.', '_' or '-', not starting "
            "with '.', '_' or '-'"
        )
    manifest = _manifest(
        arch=arch,
        space=space,
        preset=preset,
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        dataset=dataset,
        metadata=metadata,
    )
    manifest_json = manifest.model_dump_json(indent=2)
    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, in_channels, resolution, resolution, generator=generator)
    check = torch.randn(_CHECK_BATCH, in_channels, resolution, resolution, generator=generator)
    try:
        with torch.no_grad():
            reference = model(check).numpy()
    except RuntimeError as exc:
        raise ExportError(f"model: fails on input of shape {tuple(check.shape)}: {exc}") from None
    if reference.shape != (_CHECK_BATCH, num_classes):
        raise ExportError(
            f"num_classes: model outputs shape {reference.shape[1:]}, expected ({num_classes},)"
        )
    builders: dict[ExportFormat, Callable[[], bytes]] = {
        "onnx": lambda: _onnx_file(model, example, manifest_json),
        "torchscript": lambda: _torchscript_file(model, manifest_json),
        "pytorch": lambda: package_bytes(model, manifest, file_name(stem, "pytorch")),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[ExportFormat, ExportedFile] = {}
    for fmt in chosen:
        data = builders[fmt]()
        if verify:
            _verify(fmt, data, check, reference)
        path = out_dir / file_name(stem, fmt)
        sha256, size = write_atomic(path, data)
        written[fmt] = ExportedFile(
            format=fmt, path=path, sha256=sha256, size_bytes=size, media_type=MEDIA_TYPES[fmt]
        )
    return written
