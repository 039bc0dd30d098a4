"""What an export is: the formats, their media types, the file record and the zip's manifest.

Torch-free, so the API process can name formats and media types without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ExportFormat = Literal["onnx", "torchscript", "pytorch"]
FORMATS: tuple[ExportFormat, ...] = ("onnx", "torchscript", "pytorch")

MEDIA_TYPES: dict[ExportFormat, str] = {
    "onnx": "application/onnx",
    "torchscript": "application/zip",  # torch.jit.save writes a zip archive
    "pytorch": "application/zip",
}

#: File name of each format under ``out_dir``, ``{stem}`` filled in by ``file_name``.
SUFFIXES: dict[ExportFormat, str] = {
    "onnx": ".onnx",
    "torchscript": ".torchscript.pt",
    "pytorch": ".zip",
}

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# Members of the pytorch zip.
WEIGHTS_MEMBER = "weights.pt"
MANIFEST_MEMBER = "arch.json"
LOADER_MEMBER = "load.py"
PACKAGE_MEMBERS: tuple[str, ...] = (WEIGHTS_MEMBER, MANIFEST_MEMBER, LOADER_MEMBER)


class ExportError(ValueError):
    """An export was asked for with bad arguments, or its output does not match the model."""


class SubnetPackageError(ValueError):
    """A pytorch zip cannot be loaded; the message names the member and the problem."""


def file_name(stem: str, fmt: ExportFormat) -> str:
    """``{stem}.onnx``, ``{stem}.torchscript.pt`` or ``{stem}.zip``."""
    return stem + SUFFIXES[fmt]


class ExportedFile(BaseModel):
    """One written file: where it is, and what a download advertises about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: ExportFormat
    path: Path
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    media_type: str


class InputNormalization(BaseModel):
    """How the training data fed pixels to the network: ``x = (pixels / 255 - mean) / std``
    per channel; an exported subnet expects the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: list[float]
    std: list[float]
    pixel_scale: float = 255.0


class SubnetManifest(BaseModel):
    """``arch.json`` of the pytorch zip: everything needed to rebuild and feed the subnet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = 1
    space: str
    preset: str
    arch: dict[str, Any]
    arch_id: str
    resolution: int = Field(gt=0, description="Input side in pixels the subnet was exported at.")
    in_channels: int = Field(gt=0)
    num_classes: int = Field(gt=0)
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_layout: Literal["NCHW"] = "NCHW"
    normalization: InputNormalization | None = None
    dataset: dict[str, Any] | None = None
    nas_service_version: str
    torch_version: str
    metadata: dict[str, Any] = Field(default_factory=dict)
