"""ONNX export: the one place the project turns a module into ONNX bytes (subnet downloads and
the hardware profiler's onnxruntime measurements both use it)."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from nas.export.formats import INPUT_NAME

#: Accepted by the installed onnx (>= 1.15) and onnxruntime (>= 1.17) alike.
ONNX_OPSET = 17


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    *,
    dynamic_batch: bool = False,
    output_name: str = "output",
) -> bytes:
    """ONNX bytes of ``module`` (eval mode, float32), input named ``"input"``.

    ``dynamic_batch`` makes the first axis of the input and output symbolic (``"batch"``);
    otherwise the graph is fixed to ``example``'s shape, as latency profiling wants.

    Uses torch's TorchScript-based exporter (``dynamo=False``): it needs no extra package on
    the device (the torch.export-based one needs onnxscript) and exports a block in tens of
    milliseconds rather than seconds, which matters for tables of hundreds of blocks.
    """
    module = module.eval().float()
    axes = {INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module,
            (example.float(),),
            buffer,  # type: ignore[arg-type]  # the stubs say path; file objects work
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue()
