"""Fine-tuning one subnet on request: what ``POST /subnets/{id}/finetune`` takes and what the
task's endpoints answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.schemas.json_types import check_json_types
from service.api.schemas.results import FinetunePublic
from workers.spec import FinetuneSettings

FinetuneStatus = Literal["not_requested", "queued", "running", "succeeded", "failed", "cancelled"]

#: 422s that depend on the job, which no JSON Schema can state: listed in the operation's 422
#: description (schemathesis.toml accepts its 422 for schema-valid data).
FINETUNE_CHECKS = (
    "`grace_epochs` is at most `max_epochs`, the job's own `finetune.max_epochs` where the "
    "body gives none"
)


def _like(name: str) -> Any:
    """An optional field with the bounds and description of ``FinetuneSettings``'s field
    ``name`` (one source for both); None keeps the job's own setting."""
    field = FinetuneSettings.model_fields[name]
    bounds = {
        key: getattr(rule, key)
        for rule in field.metadata
        for key in ("ge", "gt", "le", "lt")
        if hasattr(rule, key)
    }
    described = f"{field.description} " if field.description else ""
    return Field(default=None, description=f"{described}Default: the job's own.", **bounds)


class FinetuneCreate(BaseModel):
    """Fine-tune the subnet standalone from its inherited weights (minutes of Ray Tune,
    queued). Every field defaults to the job's own ``finetune`` settings (the defaults where
    the job has none)."""

    model_config = ConfigDict(extra="forbid")

    samples: int | None = _like("samples")
    max_epochs: int | None = _like("max_epochs")
    grace_epochs: int | None = _like("grace_epochs")
    distill: bool | None = _like("distill")
    seed: int | None = _like("seed")

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        return check_json_types(cls, data)

    @model_validator(mode="after")
    def _grace_within_max(self) -> Self:
        if (
            self.grace_epochs is not None
            and self.max_epochs is not None
            and self.grace_epochs > self.max_epochs
        ):
            raise ValueError(
                f"grace_epochs: {self.grace_epochs} is more than max_epochs {self.max_epochs}; "
                "a trial cannot run longer than max_epochs"
            )
        return self


class FinetuneTaskPublic(BaseModel):
    """Where a subnet's fine-tuning stands. ``succeeded``: both accuracies, measured on val,
    the winning recipe and ``download_url`` for the fine-tuned weights."""

    subnet_id: int
    state: FinetuneStatus = Field(
        description="not_requested, queued, running, succeeded, failed (see error) or "
        "cancelled (nothing was recorded)."
    )
    progress: float = Field(
        ge=0.0,
        le=1.0,
        description="Trial epochs reported over samples x max_epochs (trials ASHA stops early "
        "never report the rest); 1 once it succeeded.",
    )
    position: int | None = Field(
        default=None, description="Fine-tunings ahead of this one while it is queued."
    )
    cancel_requested: bool = Field(
        default=False, description="A DELETE asked the running trials to stop."
    )
    error: str | None = Field(default=None, description="Why it failed.")
    settings: FinetuneSettings | None = Field(
        default=None,
        description="What the request runs with; null where the finetuning stage did it (the "
        "job spec's finetune says how).",
    )
    inherited_accuracy: float | None = Field(
        default=None,
        description="Measured: top-1 on val from the supernet, BN recalibrated (the subnet's "
        "measured_accuracy).",
    )
    finetuned_accuracy: float | None = Field(
        default=None,
        description="Measured: top-1 on val after fine-tuning (the recipe chosen on holdout).",
    )
    measured_on: Literal["val"] | None = Field(
        default=None, description="The split both accuracies are measured on, once succeeded."
    )
    finetune: FinetunePublic | None = Field(
        default=None, description="How finetuned_accuracy was had: recipe, epochs, trials."
    )
    download_url: str | None = Field(
        default=None, description="GET the fine-tuned state dict (torch.save) once succeeded."
    )
    requested_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
