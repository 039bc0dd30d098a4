"""Exports asked for by a token-holder: what ``POST /subnets/{id}/exports`` takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nas.export.formats import ExportFormat
from service.api.schemas.results import Weights

ExportStatus = Literal["ready", "queued", "running", "failed", "not_requested"]
WEIGHTS_TEXT = (
    "finetuned or inherited (the supernet's, BN recalibrated); by default the subnet's own: "
    "fine-tuned once it was fine-tuned, else inherited. finetuned on a subnet never fine-tuned "
    "is a 409."
)


class ExportCreate(BaseModel):
    """Make the subnet's file in one format (seconds of CPU, queued)."""

    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = Field(default="onnx", description="onnx, torchscript or pytorch.")
    weights: Weights | None = Field(default=None, description=f"The weights: {WEIGHTS_TEXT}")


class ExportPublic(BaseModel):
    """Where a subnet's file in one format stands. ``ready``: ``download_url`` serves it."""

    subnet_id: int
    format: ExportFormat
    weights: Weights = Field(description="The weights the file has (or will have).")
    state: ExportStatus
    position: int | None = Field(
        default=None, description="Exports ahead of this one while it is queued."
    )
    error: str | None = Field(default=None, description="Why the export failed.")
    sha256: str | None = None
    size_bytes: int | None = None
    download_url: str | None = Field(default=None, description="GET it once the state is ready.")
    requested_at: datetime | None = None
