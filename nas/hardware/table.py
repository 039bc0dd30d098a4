"""The latency lookup table file: a versioned JSON document, its pydantic models, load and save.

One table = one space and preset, the resolutions it covers, one device (runtime included),
the software that measured it, one entry per distinct block (median and spread, in ms), and
the linear calibration fitted on whole networks (and, for a host device, the latest anchor to
the machine's level, ``nas.hardware.anchor``). A table is written after every few entries,
so an interrupted profile leaves a valid partial table that the next run continues.
Torch-free: the service validates uploaded tables with these models.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nas.hardware.device import Device
from nas.hardware.timing import Measurement, TimingPolicy
from search_spaces import BlockSpec

#: Bumped whenever a reader of the old format would misread the new one.
FORMAT_VERSION = 1
#: Whole-network measurements a calibration needs at least.
MIN_CALIBRATION_SAMPLES = 20

Statistic = Literal["median", "min"]


class TableError(ValueError):
    """A table that cannot be used: unreadable, malformed, or for something else."""


class BlockSpecModel(BaseModel):
    """``search_spaces.BlockSpec`` as stored in a table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: str
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kernel: int = Field(ge=1)
    stride: int = Field(ge=1)
    input_size: int = Field(ge=1)
    expand: float = Field(default=0.0, ge=0.0)
    mid_channels: int = Field(default=0, ge=0)
    se: bool = False
    se_channels: int = Field(default=0, ge=0)
    act: str = "identity"
    bn: bool = False
    bias: bool = False
    residual: bool = False

    def to_spec(self) -> BlockSpec:
        return BlockSpec(**self.model_dump())

    @classmethod
    def of(cls, spec: BlockSpec) -> BlockSpecModel:
        return cls(**spec.to_dict())


class LatencyEntry(BaseModel):
    """One block measured alone; ``overhead_ms`` (the runtime's cost of a call that does
    nothing) is already subtracted from the figures, since a network pays it once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: BlockSpecModel
    median_ms: float = Field(ge=0.0)
    iqr_ms: float = Field(ge=0.0)
    min_ms: float = Field(ge=0.0)
    repeats: int = Field(ge=1)
    overhead_ms: float = Field(ge=0.0)

    @classmethod
    def of(cls, spec: BlockSpec, raw: Measurement, overhead_ms: float) -> LatencyEntry:
        return cls(
            spec=BlockSpecModel.of(spec),
            median_ms=max(raw.median_ms - overhead_ms, 0.0),
            iqr_ms=raw.iqr_ms,
            min_ms=max(raw.min_ms - overhead_ms, 0.0),
            repeats=raw.repeats,
            overhead_ms=overhead_ms,
        )

    def value(self, statistic: Statistic) -> float:
        return self.median_ms if statistic == "median" else self.min_ms


class CalibrationPoint(BaseModel):
    """One whole network: its arch, the table's sum for it, and what it measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: dict[str, Any]
    block_sum_ms: float = Field(ge=0.0)
    measured: Measurement
    macs: int = Field(ge=0)


class Calibration(BaseModel):
    """``latency = slope * (sum of entries) + per_block_ms * blocks + intercept_ms``.

    Least squares on the points. The slope absorbs what isolation changes uniformly (warm
    caches make a block alone a bit faster than inside a network); the intercept absorbs the
    per-network costs no block owns (the runtime call, input and output copies); the per-block
    term absorbs what each block costs more (or less) inside a network than alone, which
    matters where networks are so small that the runtime's work between kernels is a large
    share. It is 0 unless it predicted the points better, left out one at a time
    (``fit_calibration``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slope: float = Field(gt=0.0)
    intercept_ms: float
    per_block_ms: float = Field(default=0.0, description="Per block of the arch (0: unused).")
    samples: int = Field(ge=MIN_CALIBRATION_SAMPLES)
    r2: float
    mape: float = Field(ge=0.0, description="On the calibration points themselves.")
    loo_mape: float | None = Field(
        default=None, ge=0.0, description="Each point predicted by a fit without it."
    )

    def apply(self, block_sum_ms: Any, blocks: Any) -> Any:
        """Latency of archs whose entries sum to ``block_sum_ms`` over ``blocks`` blocks."""
        return self.slope * block_sum_ms + self.per_block_ms * blocks + self.intercept_ms


class Anchor(BaseModel):
    """When and by how much a table's predictions were rescaled to the machine's level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measured_at: datetime
    scale: float = Field(gt=0.0, description="Multiplies every calibrated prediction.")
    statistic: Statistic
    archs: list[dict[str, Any]] = Field(min_length=1, description="The networks timed.")
    predicted_ms: list[float] = Field(min_length=1, description="The table's, before scaling.")
    measured_ms: list[float] = Field(min_length=1)
    spread: float = Field(
        ge=0.0, description="Interquartile range of the measured/predicted ratios over the scale."
    )

    @model_validator(mode="after")
    def _check_lengths(self) -> Self:
        if not len(self.archs) == len(self.predicted_ms) == len(self.measured_ms):
            raise ValueError("archs, predicted_ms and measured_ms: one figure per network")
        return self

    def describe(self) -> str:
        return (
            f"x{self.scale:.3f} from {len(self.archs)} networks timed at "
            f"{self.measured_at:%Y-%m-%d %H:%M:%S} UTC (ratio spread {self.spread:.1%})"
        )


class LatencyTable(BaseModel):
    """A latency lookup table; ``complete`` once every block and the calibration are in."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    space: str = Field(min_length=1)
    preset: str = Field(min_length=1)
    resolutions: list[int] = Field(min_length=1)
    device: Device
    runtime: str
    statistic: Statistic = Field(
        default="median", description="Which figure of each entry predictions add up."
    )
    block_timing: TimingPolicy
    network_timing: TimingPolicy
    software: dict[str, str]
    reference: Measurement | None = Field(
        default=None,
        description="The drift reference module when the table was started; every figure "
        "is scaled to this speed of the machine (None: no drift correction).",
    )
    created_at: datetime
    updated_at: datetime
    expected_entries: int = Field(ge=1, description="Distinct blocks at these resolutions.")
    entries: dict[str, LatencyEntry] = Field(default_factory=dict)
    calibration_points: list[CalibrationPoint] = Field(default_factory=list)
    calibration: Calibration | None = None
    anchor: Anchor | None = Field(
        default=None,
        description="The latest re-anchoring to the machine's level (host devices only); "
        "predictions are the calibrated ones times ``anchor.scale``.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.runtime != self.device.runtime:
            raise ValueError(
                f"runtime: {self.runtime!r} differs from device.runtime {self.device.runtime!r}"
            )
        if self.resolutions != sorted(set(self.resolutions)):
            raise ValueError("resolutions: must be ascending and unique")
        for key, entry in self.entries.items():
            if entry.spec.to_spec().key != key:
                raise ValueError(f"entries[{key!r}]: key does not match its spec")
        if len(self.entries) > self.expected_entries:
            raise ValueError(
                f"entries: {len(self.entries)} entries, more than expected_entries "
                f"{self.expected_entries}"
            )
        return self

    @property
    def complete(self) -> bool:
        return len(self.entries) == self.expected_entries and self.calibration is not None

    def describe(self) -> str:
        return f"space {self.space!r} preset {self.preset!r} on device {self.device.name!r}"


def now() -> datetime:
    return datetime.now(UTC)


# --- reading and writing ---------------------------------------------------------------------
def parse_table(text: str, source: str = "latency table") -> LatencyTable:
    """Validate ``text`` as a table; ``TableError`` names the problem (JSON, version, field)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise TableError(f"{source} must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise TableError(
            f"{source} has format_version {version!r}; this nas-service reads "
            f"format_version {FORMAT_VERSION} (re-profile the device)"
        )
    try:
        return LatencyTable.model_validate(data)
    except ValidationError as exc:
        raise TableError(f"{source} is not a valid latency table: {_errors(exc)}") from None


def read_table(path: Path) -> LatencyTable:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TableError(f"latency table {path}: cannot read it ({exc.strerror})") from None
    return parse_table(text, source=f"latency table {path}")


def write_table(table: LatencyTable, path: Path) -> None:
    """Atomic: readers see the old or the new table, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.model_dump_json(indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # a table is shared data, not a secret (mkstemp makes 0600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_table_for(table: LatencyTable, space: str, preset: str) -> None:
    """Refuse a table measured for another space or preset."""
    if (table.space, table.preset) != (space, preset):
        raise TableError(
            f"latency table is for space {table.space!r} preset {table.preset!r}, "
            f"not space {space!r} preset {preset!r}"
        )


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "table"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
