"""Bodies of the result endpoints: Pareto fronts, subnets, specialisation and downloads.

Three kinds of model, kept apart: ``SpecializeCreate`` is what a client sends, ``SubnetRecord``
is a subnet on its way into the tables (from a specialisation), and the ``...Public`` models
are what clients read back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.export.formats import FORMATS, MEDIA_TYPES, SUFFIXES, ExportFormat
from nas.hardware.device import NAME_PATTERN
from service.api.schemas.json_types import check_json_types
from workers.spec import EXACTLY_ONE_BUDGET

#: What ``GET /subnets/{id}/download`` serves: the export formats, and the fine-tuned weights
#: (the finetuning stage or a fine-tuning on request writes them; no export makes them).
DownloadFormat = Literal["onnx", "torchscript", "pytorch", "finetuned"]
SortKey = Literal["accuracy", "macs", "params", "latency"]
SortOrder = Literal["asc", "desc"]


class FormatInfo(NamedTuple):
    """How one download format is stored (``artifacts.kind``) and served."""

    kind: str
    suffix: str
    media_type: str


#: ``artifacts.kind`` of each format, as the exporting stage records them
#: (``workers.stages.EXPORT_KINDS``, which imports torch: the API must not to stream a file).
_KINDS: dict[ExportFormat, str] = {
    "onnx": "onnx",
    "torchscript": "torchscript",
    "pytorch": "pytorch_zip",
}
DOWNLOAD_FORMATS: dict[DownloadFormat, FormatInfo] = {
    **{fmt: FormatInfo(_KINDS[fmt], SUFFIXES[fmt], MEDIA_TYPES[fmt]) for fmt in FORMATS},
    # the fine-tuned state dict (torch.save), as ``workers.events`` registers it
    "finetuned": FormatInfo("finetuned_weights", ".finetuned.pt", "application/octet-stream"),
}
#: The weights an export has: the supernet's (``inherited``, BN recalibrated) or those a
#: fine-tuning trained (``finetuned``). A subnet's default is ``finetuned`` once it was
#: fine-tuned, else ``inherited``.
Weights = Literal["finetuned", "inherited"]
#: ``artifacts.kind`` of a fine-tuned subnet's export with its inherited weights, per format:
#: kept apart from its default export (the format's own kind), in ``exports/<arch_id>/inherited/``.
_INHERITED_KINDS: dict[ExportFormat, str] = {
    fmt: f"{kind}_inherited" for fmt, kind in _KINDS.items()
}
FORMAT_OF_KIND: dict[str, DownloadFormat] = {
    **{info.kind: name for name, info in DOWNLOAD_FORMATS.items()},
    **{kind: fmt for fmt, kind in _INHERITED_KINDS.items()},
}


class ExportFile(NamedTuple):
    """Where one export of a subnet is kept: its ``artifacts.kind``, and ``variant``: ``""`` for
    the subnet's default export (in ``exports/<arch_id>/``), else the weights it has instead
    (its subdirectory there, and a tag in the downloaded file's name)."""

    kind: str
    variant: str


def default_weights(finetuned: bool) -> Weights:
    """A subnet's own weights: the fine-tuned ones once it was fine-tuned."""
    return "finetuned" if finetuned else "inherited"


def export_file(fmt: ExportFormat, weights: Weights, *, finetuned: bool) -> ExportFile:
    """The one mapping of an export (format, weights, whether its subnet was fine-tuned) to
    where it is kept. The default export keeps the format's kind and the directory the
    exporting stage writes; a fine-tuned subnet's inherited export has its own."""
    if weights == default_weights(finetuned):
        return ExportFile(_KINDS[fmt], "")
    if weights == "inherited":
        return ExportFile(_INHERITED_KINDS[fmt], "inherited")
    raise ValueError(f"weights: a subnet never fine-tuned has no {weights} weights")


def weights_of_kind(kind: str, *, finetuned: bool) -> Weights | None:
    """The weights a file of a subnet has, by its kind; None for a file of no download format."""
    fmt = FORMAT_OF_KIND.get(kind)
    if fmt is None:
        return None
    if fmt == "finetuned":
        return "finetuned"
    return "inherited" if kind in _INHERITED_KINDS.values() else default_weights(finetuned)


# --- in ----------------------------------------------------------------------------------------

#: 422s that depend on the job or the stored devices, which no JSON Schema can state: listed in
#: the operations' 422 descriptions (schemathesis.toml accepts their 422 for schema-valid data).
SPECIALIZE_CHECKS = (
    "a `latency_ms` budget needs a latency table of `device` for the job's space and preset (a "
    "registered device may have none); some subnet of the job's space must meet the budget (the "
    "message gives the closest figure)"
)
SUBNETS_CHECKS = (
    "`device` must be one the job has results for (the message lists them); `sort=latency` "
    "and `max_latency_ms` need a `device`"
)


class SpecializeCreate(BaseModel):
    """Find the most accurate subnet of a finished job for a device under one budget."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=EXACTLY_ONE_BUDGET)

    device: str = Field(
        pattern=NAME_PATTERN,
        description="A built-in or registered device (GET /api/v1/devices); any device, not "
        "only the job's.",
    )
    latency_ms: float | None = Field(
        default=None, gt=0.0, le=1e6, description="Latency budget on the device, in ms."
    )
    macs: int | None = Field(default=None, gt=0, le=10**15, description="MACs budget.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed of the evolution.")

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        return check_json_types(cls, data)

    @model_validator(mode="after")
    def _exactly_one_budget(self) -> Self:
        if (self.latency_ms is None) == (self.macs is None):
            raise ValueError("latency_ms: give exactly one of latency_ms or macs")
        return self

    @property
    def budget(self) -> dict[str, float | int]:
        if self.latency_ms is not None:
            return {"latency_ms": self.latency_ms}
        assert self.macs is not None
        return {"macs": self.macs}


# --- rows ----------------------------------------------------------------------------------------


class LatencyRecord(BaseModel):
    """A subnet's latency on one device, on its way in: finite and not negative."""

    predicted_ms: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    measured_ms: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)


class SubnetRecord(BaseModel):
    """A subnet to store (``workers.results.SubnetResult`` as the service receives it)."""

    arch_id: str = Field(min_length=1, max_length=128)
    arch: dict[str, Any]
    resolution: int = Field(gt=0)
    macs: int = Field(ge=0)
    params: int = Field(ge=0)
    predicted_accuracy: float | None = Field(default=None, ge=0.0, le=100.0, allow_inf_nan=False)
    measured_accuracy: float | None = Field(default=None, ge=0.0, le=100.0, allow_inf_nan=False)
    latencies: dict[str, LatencyRecord] = Field(default_factory=dict)


# --- out -----------------------------------------------------------------------------------------


class LatencyPublic(BaseModel):
    predicted_ms: float | None = Field(description="Predicted: from the device's latency table.")
    measured_ms: float | None = Field(
        description="Measured: the whole network timed on the device (host devices); null "
        "where it could not be timed, and then fronts and picks use the prediction."
    )


class FinetunePublic(BaseModel):
    """How a subnet's fine-tuned accuracy was had (the finetuning stage's winning trial)."""

    holdout_accuracy: float = Field(
        description="Measured on the holdout split: the winning recipe's top-1 there, what "
        "chose it among the trials (so not the figure to compare; finetuned_accuracy is)."
    )
    recipe: dict[str, float | int] = Field(
        description="The winning recipe: lr, weight_decay, epochs, label_smoothing, kd_weight."
    )
    epochs: int = Field(description="Epochs the winning trial ran.")
    trials: int = Field(description="Recipes tried (Ray Tune trials).")
    stopped_early: int = Field(description="Trials ASHA stopped before their epochs.")


class SubnetPublic(BaseModel):
    """One subnet a job evaluated; accuracies are percent (0-100)."""

    id: int
    job_id: int
    arch_id: str = Field(description="The space's canonical id of the arch (unique per job).")
    arch: dict[str, Any]
    resolution: int
    macs: int
    params: int
    predicted_accuracy: float | None = Field(
        description="Predicted: what the search believed (the accuracy predictor, or the "
        "holdout split for strategies that measure); null where the search did not score it."
    )
    measured_accuracy: float | None = Field(
        description="Measured: top-1 on val from the supernet, BN recalibrated. Fronts and "
        "best picks are made from this figure only."
    )
    finetuned_accuracy: float | None = Field(
        default=None,
        description="Measured: top-1 on val after the finetuning stage trained the subnet "
        "standalone from its inherited weights (the recipe chosen on holdout); null where it "
        "was not fine-tuned. Shown beside measured_accuracy; fronts and picks stay on that one.",
    )
    finetune: FinetunePublic | None = Field(
        default=None, description="How finetuned_accuracy was had; null where not fine-tuned."
    )
    latencies: dict[str, LatencyPublic] = Field(description="Per device name.")


class ArtifactPublic(BaseModel):
    """A file of the subnet: fetch it with ``GET /api/v1/subnets/{id}/download?format=``."""

    id: int
    kind: str
    format: DownloadFormat | None = Field(description="The download format, if it is one.")
    weights: Weights | None = Field(
        description="The weights the file has (an export: download it with `&weights=` this); "
        "null for a file of no download format."
    )
    sha256: str
    size_bytes: int
    created_at: datetime


class FrontMembershipPublic(BaseModel):
    device: str
    position: int = Field(description="0-based, along the front.")


class SubnetDetailPublic(SubnetPublic):
    artifacts: list[ArtifactPublic]
    fronts: list[FrontMembershipPublic] = Field(description="The fronts the subnet is on.")


class SubnetsPublic(BaseModel):
    data: list[SubnetPublic]
    count: int = Field(description="Subnets matching the filters, all pages together.")
    limit: int
    offset: int


class FrontPublic(BaseModel):
    """A job's Pareto front on one device, its members ordered along the first objective."""

    device: str
    objectives: list[str]
    hypervolume: float | None = Field(
        description="Of the members' measured values when the search stage wrote the front."
    )
    budget: dict[str, float | int] | None = Field(
        description="The job's budget for the device ({'latency_ms': x} or {'macs': n})."
    )
    best_subnet_id: int | None = Field(
        description="The most accurate member within the budget, on measured accuracy and "
        "the latency shown (measured where timed); null when no measured subnet meets it."
    )
    members: list[SubnetPublic] = Field(
        description="The job's measured subnets within the budget that no other measured "
        "subnet of the job beats on both accuracy and the second objective; most accurate "
        "first."
    )


class FrontsPublic(BaseModel):
    data: list[FrontPublic]
    count: int


class SpecializePublic(BaseModel):
    subnet: SubnetDetailPublic
    device: str
    budget: dict[str, float | int]
    figures: dict[str, Literal["measured", "predicted"]] = Field(
        description="How the pick's figures were had: accuracy is measured on val; latency_ms "
        "is measured (timed whole on this host) or predicted (the device's table); "
        "finetuned_accuracy, where the pick was fine-tuned, is measured on val."
    )
    from_job: bool = Field(description="The pick is a subnet the job had already measured.")
    candidates: int = Field(description="Measured subnets compared, the job's included.")
    rescaled: float | None = Field(
        default=None,
        description="Set when every subnet first proposed was timed over the budget: the "
        "measured/predicted latency ratio by which the device's table was rescaled to propose "
        "again.",
    )
    seconds: float = Field(description="How long the specialisation took.")
