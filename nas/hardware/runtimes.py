"""The runtimes a device measures with: torch (CPU, or CUDA with synchronisation) and
onnxruntime (CPU). Each turns a module and an example input into a closure that runs one
forward pass and returns only when it is finished, so ``timing.measure`` can time it.

The thread count is fixed before anything runs (``torch.set_num_threads`` / onnxruntime's
``intra_op_num_threads``): latency depends on it more than on most architecture choices.
"""

from __future__ import annotations

import abc
import ctypes
import platform
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nas import __version__
from nas.export.onnx import export_onnx
from nas.hardware.device import Device

Runner = Callable[[], object]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit


def cpu_model() -> str:
    """The processor's model name: tables measured on one CPU model do not hold for another
    (the same profiling code gave a tiny onnxruntime table 16% within 10% on one VM and 100%
    on the next)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the heap instead of returning it to the system.

    Eager torch allocates a network's activations afresh on every run; by default glibc serves
    the large ones with ``mmap`` and unmaps them on free, so every run page-faults them in
    again. That cost depends on the arch and is not paid in proportion by blocks measured
    alone (ofa_mbv3 at 224 px: the whole-network / block-sum ratio spread 13% across subnets by
    default, 1.5% with freed memory kept). Deployments keep activation memory (arenas,
    jemalloc, static plans), so measuring this way is also the more faithful setting. Returns
    False where this is not glibc (nothing to do, or no way to do it).
    """
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    kept = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    return kept and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1


class Runtime(abc.ABC):
    """Prepares modules for one device. Not thread-safe: it sets process-wide thread counts."""

    def __init__(self, device: Device) -> None:
        self.device = device

    @abc.abstractmethod
    def prepare(self, module: nn.Module, example: torch.Tensor) -> Runner:
        """A closure running ``module`` on ``example`` once, synchronously."""

    @abc.abstractmethod
    def outputs(self, module: nn.Module, example: torch.Tensor) -> np.ndarray:
        """What ``module`` computes on ``example`` in this runtime, as float32 numpy."""

    def versions(self) -> dict[str, str]:
        """Software that shapes the figures; stored with every table."""
        return {
            "nas_service": __version__,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu": cpu_model(),
        }


class TorchRuntime(Runtime):
    """Eager torch in inference mode; on CUDA every run ends with ``torch.cuda.synchronize``."""

    def __init__(self, device: Device) -> None:
        super().__init__(device)
        if device.accelerator == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device.name!r} needs CUDA, and torch sees no CUDA device")
        torch.set_num_threads(device.threads)
        keep_freed_memory()
        self._target = torch.device("cuda" if device.accelerator == "cuda" else "cpu")
        self._dtype = _DTYPES[device.dtype]

    def _place(self, module: nn.Module, example: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        module = module.eval().to(device=self._target, dtype=self._dtype)
        return module, example.to(device=self._target, dtype=self._dtype)

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Runner:
        module, x = self._place(module, example)
        cuda = self._target.type == "cuda"

        def run() -> object:
            with torch.inference_mode():
                out = module(x)
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    def outputs(self, module: nn.Module, example: torch.Tensor) -> np.ndarray:
        module, x = self._place(module, example)
        with torch.inference_mode():
            return module(x).float().cpu().numpy()


class OnnxRuntime(Runtime):
    """onnxruntime's CPU execution provider on the exported graph, all graph optimisations."""

    def __init__(self, device: Device) -> None:
        super().__init__(device)
        import onnxruntime

        self._ort = onnxruntime
        torch.set_num_threads(device.threads)  # export and reference runs stay comparable
        keep_freed_memory()  # onnxruntime has its own arena; this steadies numpy outputs

    def session(self, model: bytes) -> object:
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.device.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Runner:
        session = self.session(export_onnx(module, example))
        feeds = {"input": example.float().numpy()}
        run_session = session.run  # type: ignore[attr-defined]

        def run() -> object:
            return run_session(None, feeds)

        return run

    def outputs(self, module: nn.Module, example: torch.Tensor) -> np.ndarray:
        session = self.session(export_onnx(module, example))
        return session.run(None, {"input": example.float().numpy()})[0]  # type: ignore[attr-defined]

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "onnxruntime": self._ort.__version__}


def make_runtime(device: Device) -> Runtime:
    """The runtime ``device`` names."""
    if device.runtime == "torch":
        return TorchRuntime(device)
    if device.runtime == "onnxruntime":
        return OnnxRuntime(device)
    raise ValueError(f"runtime must be one of ('torch', 'onnxruntime'), got {device.runtime!r}")
