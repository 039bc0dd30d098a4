"""Bodies of the device endpoints. An upload is a ``nas.hardware.LatencyTable`` as written by
``nas device profile`` (the table names the device it was measured on); what comes back are
the device and the stored tables' metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nas.hardware.device import RuntimeName


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
