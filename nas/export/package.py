"""The ``pytorch`` format: a zip of ``weights.pt`` (a state dict that ``torch.load(...,
weights_only=True)`` reads without unpickling code), ``arch.json`` (``SubnetManifest``) and
``load.py`` (how to load it). ``load_subnet`` rebuilds the static subnet from the search space
and loads the weights strictly, refusing a damaged or foreign zip with a message that names the
member and the problem.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any

import torch
from pydantic import ValidationError
from torch import nn

import search_spaces
from nas.export.formats import (
    LOADER_MEMBER,
    MANIFEST_MEMBER,
    PACKAGE_MEMBERS,
    WEIGHTS_MEMBER,
    SubnetManifest,
    SubnetPackageError,
)

_MAX_MANIFEST_BYTES = 1 << 20
_MAX_WEIGHTS_BYTES = 4 << 30
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: same subnet, same bytes

_LOADER = '''"""Load the subnet in {zip_name} (needs `pip install nas-service`):

    python load.py {zip_name}
"""

import sys

import torch

from nas.export import load_subnet, read_manifest

path = sys.argv[1] if len(sys.argv) > 1 else "{zip_name}"
model = load_subnet(path)  # static torch module, eval mode, weights loaded strictly
manifest = read_manifest(path)  # arch.json: space, arch, resolution, input normalization
side = manifest.resolution
# Real inputs: pixels / 255, minus manifest.normalization.mean, divided by .std, per channel.
x = torch.zeros(1, manifest.in_channels, side, side)
with torch.no_grad():
    print(model(x).shape)  # (1, num_classes) logits
'''


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED if name == WEIGHTS_MEMBER else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def package_bytes(model: nn.Module, manifest: SubnetManifest, zip_name: str) -> bytes:
    """The zip's bytes: ``model``'s state dict, ``manifest`` and a loader for ``zip_name``."""
    # clone(): an extracted weight may be a view of a larger supernet tensor, and torch.save
    # writes a view's whole storage.
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    weights = io.BytesIO()
    torch.save(state, weights)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(_member(WEIGHTS_MEMBER), weights.getvalue())
        zf.writestr(_member(MANIFEST_MEMBER), manifest.model_dump_json(indent=2))
        zf.writestr(_member(LOADER_MEMBER), _LOADER.format(zip_name=zip_name))
    return buffer.getvalue()


def _open(source: str | Path | IO[bytes], label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise SubnetPackageError(
            f"{label}: not a zip archive (a subnet zip holds {list(PACKAGE_MEMBERS)})"
        ) from None


def _read(zf: zipfile.ZipFile, name: str, limit: int, label: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise SubnetPackageError(
            f"{label}: missing member {name!r} (has {sorted(zf.namelist())}, "
            f"a subnet zip holds {list(PACKAGE_MEMBERS)})"
        ) from None
    if info.file_size > limit:
        raise SubnetPackageError(f"{label}: {name} is {info.file_size} bytes, over {limit}")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise SubnetPackageError(f"{label}: {name} is damaged ({exc})") from None


def _validation_message(exc: ValidationError, prefix: str = "") -> str:
    """``field: message`` for the first few errors, so the user sees which field is wrong."""
    parts = []
    for error in exc.errors()[:5]:
        where = (prefix + ".".join(str(p) for p in error["loc"])).rstrip(".") or "value"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _manifest(zf: zipfile.ZipFile, label: str) -> SubnetManifest:
    raw = _read(zf, MANIFEST_MEMBER, _MAX_MANIFEST_BYTES, label)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SubnetPackageError(f"{label}: {MANIFEST_MEMBER} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SubnetPackageError(f"{label}: {MANIFEST_MEMBER} must hold a JSON object")
    try:
        return SubnetManifest.model_validate(data)
    except ValidationError as exc:
        raise SubnetPackageError(
            f"{label}: {MANIFEST_MEMBER}: {_validation_message(exc)}"
        ) from None


def _state_dict(zf: zipfile.ZipFile, label: str) -> dict[str, torch.Tensor]:
    raw = _read(zf, WEIGHTS_MEMBER, _MAX_WEIGHTS_BYTES, label)
    try:
        state: Any = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SubnetPackageError(
            f"{label}: {WEIGHTS_MEMBER} is not a torch state dict ({reason})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SubnetPackageError(
            f"{label}: {WEIGHTS_MEMBER} must hold a dict of parameter names to tensors"
        )
    return state


def _rebuild(manifest: SubnetManifest, label: str) -> nn.Module:
    where = f"{label}: {MANIFEST_MEMBER}"
    try:
        space = search_spaces.get(
            manifest.space,
            preset=manifest.preset,
            num_classes=manifest.num_classes,
            in_channels=manifest.in_channels,
        )
    except ValueError as exc:
        raise SubnetPackageError(f"{where}: {exc}") from None
    try:
        arch = space.arch_from_dict(manifest.arch)
    except ValidationError as exc:
        raise SubnetPackageError(f"{where}: {_validation_message(exc, 'arch.')}") from None
    except ValueError as exc:
        raise SubnetPackageError(f"{where}: arch: {exc}") from None
    if space.arch_id(arch) != manifest.arch_id:
        raise SubnetPackageError(
            f"{where}: arch_id {manifest.arch_id!r} does not match the arch "
            f"(its id is {space.arch_id(arch)!r})"
        )
    return space.extract(space.build_supernet(), arch)


def read_manifest(path: str | Path) -> SubnetManifest:
    """``arch.json`` of the subnet zip at ``path``, validated (no torch work)."""
    path = Path(path)
    with _open(path, path.name) as zf:
        return _manifest(zf, path.name)


def load_subnet(path: str | Path | IO[bytes]) -> nn.Module:
    """The static subnet in a ``pytorch`` zip, weights loaded strictly, in eval mode.

    Raises ``SubnetPackageError`` (a ``ValueError``) naming the member and the problem for a
    zip that is not a subnet package, has a damaged member, names an unknown space, preset or
    arch, or holds weights that do not fit the arch.
    """
    label = Path(path).name if isinstance(path, str | Path) else "subnet zip"
    with _open(path, label) as zf:
        manifest = _manifest(zf, label)
        state = _state_dict(zf, label)
    model = _rebuild(manifest, label)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise SubnetPackageError(
            f"{label}: {WEIGHTS_MEMBER} does not fit the arch in {MANIFEST_MEMBER}: {detail}"
        ) from None
    return model.eval()
