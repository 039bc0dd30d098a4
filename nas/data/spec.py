"""The validated description of a dataset: what a job spec, the CLI and the API accept."""

from __future__ import annotations

import reprlib
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas.data.paths import NAME_MAX, PATH_MAX

DatasetKind = Literal["digits", "cifar10", "cifar100", "imagefolder", "synthetic"]

#: Kinds read from files under ``root``; the others are generated or shipped in a package.
PATH_KINDS: frozenset[str] = frozenset({"cifar10", "cifar100", "imagefolder"})

_NONE = {"type": "null"}
#: ``_check_kind_fields`` in JSON Schema, for the OpenAPI schema (clients and fuzzers built
#: from it): a path kind needs a ``root``, the others take none, and only ``synthetic`` takes
#: ``num_samples`` and ``num_classes``. A missing ``kind`` is ``digits``.
_KIND_FIELDS: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["kind", "root"],
            "properties": {
                "kind": {"enum": sorted(PATH_KINDS)},
                "root": {"type": "string", "minLength": 1},
                "num_samples": _NONE,
                "num_classes": _NONE,
            },
        },
        {"required": ["kind"], "properties": {"kind": {"const": "synthetic"}, "root": _NONE}},
        {
            "properties": {
                "kind": {"const": "digits"},
                "root": _NONE,
                "num_samples": _NONE,
                "num_classes": _NONE,
            }
        },
    ]
}
#: What ``_check_path_text`` checks: no NUL byte, no component over NAME_MAX.
_ROOT_TEXT = f"^(?:[^/\\x00]{{0,{NAME_MAX}}}/)*[^/\\x00]{{0,{NAME_MAX}}}$"


class DatasetSpec(BaseModel):
    """Which images, at which base resolution, split how.

    ``root`` is relative to the data root (``NAS_DATA_ROOT``) or an absolute path inside it; it
    is checked when the data is loaded, because only the loader knows the data root.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_KIND_FIELDS)

    kind: DatasetKind = "digits"
    root: str | None = Field(
        default=None,
        max_length=PATH_MAX,
        description="Directory of a cifar10/cifar100/imagefolder dataset.",
        json_schema_extra={"pattern": _ROOT_TEXT},
    )
    seed: int = Field(default=0, ge=0, description="Seed of the deterministic splits.")
    resolution: int = Field(default=32, ge=8, le=1024, description="Base image side in pixels.")
    channels: Literal[1, 3] = 3
    val_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of all images kept for val when the source has no val split.",
    )
    holdout_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Share of the train images carved out for predictor building.",
    )
    augment: bool | None = Field(
        default=None, description="Random crop + flip on train; None = the kind's default."
    )
    num_samples: int | None = Field(
        default=None, ge=20, le=1_000_000, description="synthetic only: images generated."
    )
    num_classes: int | None = Field(
        default=None, ge=2, le=1000, description="synthetic only: number of classes."
    )

    @field_validator("root")
    @classmethod
    def _check_path_text(cls, root: str | None) -> str | None:
        """What no path can be, refused before the disk is asked (it would raise, not answer)."""
        if root is None:
            return root
        if "\x00" in root:
            raise ValueError(f"{reprlib.repr(root)} holds a NUL byte, which no path can hold")
        longest = max(root.split("/"), key=len)
        if len(longest) > NAME_MAX:
            raise ValueError(
                f"a component of the path is {len(longest)} characters long "
                f"({longest[:20]!r}...); at most {NAME_MAX} (NAME_MAX)"
            )
        return root

    @model_validator(mode="after")
    def _check_kind_fields(self) -> Self:
        if self.kind in PATH_KINDS and not self.root:
            raise ValueError(
                f"root: required for kind {self.kind!r} (a directory under the data root)"
            )
        if self.kind not in PATH_KINDS and self.root is not None:
            raise ValueError(
                f"root: {reprlib.repr(self.root)} is not used by kind {self.kind!r}; only "
                f"{sorted(PATH_KINDS)} read a directory"
            )
        if self.kind != "synthetic" and (self.num_samples or self.num_classes):
            raise ValueError("num_samples/num_classes: only kind 'synthetic' takes them")
        return self

    @property
    def augment_train(self) -> bool:
        """Digits and synthetic images are not flipped or cropped unless asked (a flipped digit
        is another digit); natural images are."""
        if self.augment is not None:
            return self.augment
        return self.kind in PATH_KINDS
