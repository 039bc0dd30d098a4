"""Export of static subnets: ONNX, TorchScript, and a zip of weights + ``arch.json`` that
``load_subnet`` turns back into a torch module.

Importing this package does not import torch (the API process names formats and media types
on every download request); ``export_subnet``, ``load_subnet``, ``read_manifest`` and
``export_onnx`` load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nas.export.formats import (
    FORMATS,
    MEDIA_TYPES,
    ExportedFile,
    ExportError,
    ExportFormat,
    InputNormalization,
    SubnetManifest,
    SubnetPackageError,
    file_name,
)

if TYPE_CHECKING:
    from nas.export.exporter import export_subnet
    from nas.export.onnx import export_onnx
    from nas.export.package import load_subnet, read_manifest

_LAZY = {
    "export_subnet": "nas.export.exporter",
    "export_onnx": "nas.export.onnx",
    "load_subnet": "nas.export.package",
    "read_manifest": "nas.export.package",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nas.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "ExportError",
    "ExportFormat",
    "ExportedFile",
    "InputNormalization",
    "SubnetManifest",
    "SubnetPackageError",
    "export_onnx",
    "export_subnet",
    "file_name",
    "load_subnet",
    "read_manifest",
]
