"""The validated description of a dataset: what a job spec, the CLI and the API accept."""

from __future__ import annotations

import reprlib
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas.data.paths import NAME_MAX, PATH_MAX
from nas.data.transforms import Augmentation

DatasetKind = Literal[
    "digits", "cifar10", "cifar100", "imagefolder", "synthetic", "idx", "fashion_mnist"
]

#: Each kind's train augmentation when the spec names none (``augmentation``).
_DEFAULT_AUGMENTATION: dict[str, Augmentation] = {
    "cifar10": "pad_crop_flip",
    "cifar100": "pad_crop_flip",
    "imagefolder": "resized_crop_flip",
    # Grey 28x28 digits and clothes: shifted, never mirrored (a mirrored digit is another one;
    # Fashion-MNIST is usually trained unflipped too).
    "idx": "pad_crop",
    "fashion_mnist": "pad_crop",
}

#: Kinds read from files under ``root``; the others are generated or shipped in a package.
PATH_KINDS: frozenset[str] = frozenset({"cifar10", "cifar100", "imagefolder", "idx"})
#: Kinds that read an installed package's files without a ``root``, or a ``root`` when given.
OPTIONAL_ROOT_KINDS: frozenset[str] = frozenset({"fashion_mnist"})

_NONE = {"type": "null"}
#: ``_check_kind_fields`` in JSON Schema, for the OpenAPI schema (clients and fuzzers built
#: from it): a path kind needs a ``root``, ``fashion_mnist`` may take one, the others take
#: none, and only ``synthetic`` takes ``num_samples`` and ``num_classes``. A missing ``kind``
#: is ``digits``.
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
        {
            "required": ["kind"],
            "properties": {
                "kind": {"enum": sorted(OPTIONAL_ROOT_KINDS)},
                "root": {"anyOf": [{"type": "string", "minLength": 1}, _NONE]},
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
        description="Directory of a cifar10/cifar100/imagefolder/idx dataset; fashion_mnist: "
        "optional (unset: the installed package dataset-fashion-mnist).",
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
    max_train_images: int | None = Field(
        default=None,
        ge=10,
        le=100_000_000,
        description="Train on a stratified, seeded subset of at most this many images (a quick "
        "search on a large dataset); val and holdout are not cut.",
    )
    augment: bool | Augmentation | None = Field(
        default=None,
        description="Train-time augmentation: a policy (none, pad_crop, pad_crop_flip, "
        "resized_crop_flip), true for the kind's default policy, false for none; unset = the "
        "kind's default (photos: resized_crop_flip; CIFAR: pad_crop_flip; idx, fashion_mnist: "
        "pad_crop; digits, synthetic: none). Val and holdout are never augmented.",
    )
    num_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="DataLoader worker processes per training or evaluation process; unset = "
        "0 for images held in memory, else one fewer than the CPUs the process was given "
        "(at most 8).",
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
        if self.kind in OPTIONAL_ROOT_KINDS and self.root == "":
            raise ValueError(
                "root: empty; give a directory under the data root, or leave root out to read "
                f"kind {self.kind!r} from its installed package"
            )
        if self.kind not in PATH_KINDS | OPTIONAL_ROOT_KINDS and self.root is not None:
            raise ValueError(
                f"root: {reprlib.repr(self.root)} is not used by kind {self.kind!r}; only "
                f"{sorted(PATH_KINDS | OPTIONAL_ROOT_KINDS)} read a directory"
            )
        if self.kind != "synthetic" and (self.num_samples or self.num_classes):
            raise ValueError("num_samples/num_classes: only kind 'synthetic' takes them")
        return self

    @property
    def augmentation(self) -> Augmentation:
        """The train split's policy, resolved: digits and synthetic images are not cropped or
        flipped unless asked (a flipped digit is another digit), natural images are."""
        if isinstance(self.augment, str):
            return self.augment
        default = _DEFAULT_AUGMENTATION.get(self.kind, "none")
        if self.augment is None:
            return default
        if not self.augment:
            return "none"
        return default if default != "none" else "pad_crop"

    @property
    def augment_train(self) -> bool:
        return self.augmentation != "none"
