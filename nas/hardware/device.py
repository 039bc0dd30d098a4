"""Where latency is measured: a validated ``Device`` and the devices every host has built in.

A device is a *measurement setting*, not just a board: the same phone measured with 1 and 4
threads, or at batch 1 and 8, gives different latencies, so each combination is its own device
with its own tables. Torch-free (the API validates devices without loading torch).
"""

from __future__ import annotations

import os
import platform
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

RuntimeName = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
Accelerator = Literal["cpu", "cuda"]
DType = Literal["float32", "float16", "bfloat16"]

BUILTIN_NAMES: tuple[str, ...] = tuple(f"host-cpu-{runtime}" for runtime in RUNTIMES)

#: Lower-case letters, digits, ``.``, ``_`` and ``-``: names become file names and URL parts.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class Device(BaseModel):
    """One way of running networks on one piece of hardware; tables are measured per device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Lower-case letters, digits, '.', '_' and '-' (1-64 characters).",
    )
    runtime: RuntimeName = Field(description="What executes the network: torch or onnxruntime.")
    accelerator: Accelerator = Field(
        default="cpu", description="cuda is measured with torch only (synchronised timing)."
    )
    batch_size: int = Field(default=1, ge=1, le=1024, description="Images per forward pass.")
    threads: int = Field(
        default=1, ge=1, le=256, description="Intra-op threads, fixed while measuring."
    )
    dtype: DType = Field(default="float32", description="Weights and activations.")
    hardware: str = Field(
        default="",
        max_length=500,
        description="Free-form: SoC or CPU model, clocks, OS, power mode.",
    )

    @model_validator(mode="after")
    def _check_combination(self) -> Self:
        if self.runtime == "onnxruntime" and self.accelerator != "cpu":
            raise ValueError(
                "accelerator: onnxruntime is measured on 'cpu' only; allowed values: ['cpu']"
            )
        if self.runtime == "onnxruntime" and self.dtype != "float32":
            raise ValueError(
                "dtype: onnxruntime tables are float32 (the exported graph); "
                "allowed values: ['float32']"
            )
        if self.accelerator == "cpu" and self.dtype == "float16":
            raise ValueError(
                "dtype: float16 needs accelerator 'cuda'; allowed values on cpu: "
                "['float32', 'bfloat16']"
            )
        return self


def host_description() -> str:
    """What this machine is, as far as the standard library can tell."""
    cpu = platform.processor() or platform.machine() or "unknown cpu"
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def builtin_devices() -> dict[str, Device]:
    """``host-cpu-torch`` and ``host-cpu-onnxruntime``: this machine, batch 1, one thread.

    One thread because it is what an edge deployment usually runs and what stays steady on a
    shared host; register another device for other settings.
    """
    hardware = host_description()
    return {
        name: Device(name=name, runtime=runtime, hardware=hardware)  # type: ignore[arg-type]
        for name, runtime in zip(BUILTIN_NAMES, RUNTIMES, strict=True)
    }
