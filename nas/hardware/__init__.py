"""Hardware awareness: devices, measured latency, lookup tables and a vectorised predictor.

Torch-free on import (the API validates devices and tables without loading torch): the
runtimes, block builders and the profiler live in ``nas.hardware.runtimes``,
``nas.hardware.modules`` and ``nas.hardware.profile`` and import torch themselves.
See docs/hardware.md for the table format and how to profile a device.
"""

from __future__ import annotations

from nas.hardware.anchor import measure_anchor, reanchor
from nas.hardware.decompose import Decomposition, decompose
from nas.hardware.device import BUILTIN_NAMES, RUNTIMES, Device, builtin_devices
from nas.hardware.fidelity import Fidelity, fidelity
from nas.hardware.predictor import LatencyPredictor, MissingEntryError
from nas.hardware.store import DeviceNotFoundError, DeviceStore, JsonDirectoryStore
from nas.hardware.table import (
    FORMAT_VERSION,
    MIN_CALIBRATION_SAMPLES,
    Anchor,
    Calibration,
    LatencyEntry,
    LatencyTable,
    TableError,
    check_table_for,
    parse_table,
    read_table,
    write_table,
)
from nas.hardware.timing import Measurement, TimingPolicy, measure

__all__ = [
    "BUILTIN_NAMES",
    "FORMAT_VERSION",
    "MIN_CALIBRATION_SAMPLES",
    "RUNTIMES",
    "Anchor",
    "Calibration",
    "Decomposition",
    "Device",
    "DeviceNotFoundError",
    "DeviceStore",
    "Fidelity",
    "JsonDirectoryStore",
    "LatencyEntry",
    "LatencyPredictor",
    "LatencyTable",
    "Measurement",
    "MissingEntryError",
    "TableError",
    "TimingPolicy",
    "builtin_devices",
    "check_table_for",
    "decompose",
    "fidelity",
    "measure",
    "measure_anchor",
    "parse_table",
    "read_table",
    "reanchor",
    "write_table",
]
