"""Bodies of the device endpoints. An upload is a ``nas.hardware.LatencyTable`` as written by
``nas device profile`` (the table names the device it was measured on); what comes back are
the device and the stored tables' metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import search_spaces
from nas.hardware.device import BUILTIN_NAMES, RuntimeName
from nas.hardware.table import LatencyTable
from service.api.schemas.jobs import preset_of_space
from service.api.schemas.json_types import check_json_types

_NO_NUL = "^[^\\x00]*$"
#: ``LatencyTable._check_consistency`` (``runtime`` is the device's) and
#: ``Device._check_combination`` in JSON Schema: onnxruntime on cpu in float32; torch on cuda
#: in any dtype, or on cpu (the default) in float32 or bfloat16.
_RUNTIME_AND_DEVICE: dict[str, Any] = {
    "anyOf": [
        {
            "properties": {
                "runtime": {"const": "onnxruntime"},
                "device": {
                    "properties": {
                        "runtime": {"const": "onnxruntime"},
                        "accelerator": {"const": "cpu"},
                        "dtype": {"const": "float32"},
                    }
                },
            }
        },
        {
            "properties": {
                "runtime": {"const": "torch"},
                "device": {
                    "required": ["accelerator"],
                    "properties": {"runtime": {"const": "torch"}, "accelerator": {"const": "cuda"}},
                },
            }
        },
        {
            "properties": {
                "runtime": {"const": "torch"},
                "device": {
                    "properties": {
                        "runtime": {"const": "torch"},
                        "accelerator": {"const": "cpu"},
                        "dtype": {"enum": ["float32", "bfloat16"]},
                    }
                },
            }
        },
    ]
}


def _upload_schema(schema: dict[str, Any]) -> None:
    """What the service checks of an upload beyond the table model (``service.store.devices``)
    and what the model checks across fields, where JSON Schema can say it: a known space and
    one of its presets, a complete table (a calibration, entries), no built-in device name, no
    NUL in ``device.hardware``. Not sayable, so answered 422 and listed in the operations' 422
    descriptions: resolutions in ascending order, each entry's key matching its block, as many
    entries as ``expected_entries``, an anchor's three lists of one length."""
    properties = schema["properties"]
    properties["space"]["enum"] = search_spaces.names()
    properties["resolutions"]["uniqueItems"] = True
    properties["entries"]["minProperties"] = 1
    schema["allOf"] = [
        _RUNTIME_AND_DEVICE,
        preset_of_space(),
        {"required": ["calibration"], "properties": {"calibration": {"type": "object"}}},
        {
            "properties": {
                "device": {
                    "properties": {
                        "name": {"not": {"enum": list(BUILTIN_NAMES)}},
                        "hardware": {"pattern": _NO_NUL},
                    }
                }
            }
        },
    ]


#: What is checked of an upload that no JSON Schema can state: the 422 descriptions of the
#: upload operations list it (and schemathesis.toml accepts their 422 for schema-valid tables).
TABLE_CHECKS = (
    "`resolutions` ascend; each key of `entries` is its block's key; there are "
    "`expected_entries` entries (the profile finished); an `anchor`'s `archs`, `predicted_ms` "
    "and `measured_ms` are as long as each other"
)


class LatencyTableUpload(LatencyTable):
    """A latency table as uploaded: ``nas.hardware.LatencyTable``, validated the same way; its
    OpenAPI schema also states what an upload must be beyond a table file (complete, for a
    known space and preset, measured on a device that is not built in)."""

    model_config = ConfigDict(json_schema_extra=_upload_schema)

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        return check_json_types(cls, data)


class LatencyTableInfo(BaseModel):
    """A stored table without its content."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    space: str
    preset: str
    revision: int = Field(description="1, 2, ... per (device, space, preset).")
    format_version: int
    sha256: str = Field(description="Of the stored canonical JSON.")
    size_bytes: int
    created_at: datetime


class LatencyTablePublic(LatencyTableInfo):
    content: dict[str, Any] = Field(description="The table as uploaded (nas.hardware format).")


class DevicePublic(BaseModel):
    name: str
    runtime: RuntimeName
    accelerator: Literal["cpu", "cuda"]
    batch_size: int
    threads: int
    dtype: Literal["float32", "float16", "bfloat16"]
    hardware: str
    builtin: bool = Field(description="A host device every installation has (not stored).")
    created_at: datetime | None
    tables: list[LatencyTableInfo]


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int
