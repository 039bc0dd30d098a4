"""Latency tables for a job's devices: registered devices' from the job directory, built-in
host devices' profiled here once and cached.

A registered device's table was measured on the device itself and uploaded; the controller
copies it into ``job_dir/tables/<device>.json`` when it launches the job, so the runner needs
no database. The built-in host devices (``host-cpu-torch``, ``host-cpu-onnxruntime``) have no
uploaded table: the first job (or specialize request) that needs one profiles this host with a
quick plan and caches it under ``NAS_ARTIFACT_DIR/tables/``; a file lock keeps two processes
from profiling the same table at once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas.hardware.table import LatencyTable

#: Registered devices' tables inside a job directory.
JOB_TABLES_DIR = "tables"


def quick_plan() -> object:
    """Short timings: seconds for a tiny space; the calibration absorbs most of the noise.
    ``min`` is the steadier statistic on a shared machine (noise only ever adds time)."""
    from nas.hardware import TimingPolicy
    from nas.hardware.profile import ProfilePlan

    fast = TimingPolicy(warmup=2, min_repeats=5, max_repeats=20, budget_s=0.02)
    network = TimingPolicy(warmup=2, min_repeats=5, max_repeats=20, budget_s=0.05)
    return ProfilePlan(
        statistic="min", block_timing=fast, network_timing=network, calibration_samples=20
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def host_table_path(
    artifact_dir: Path, device: str, space: str, preset: str, num_classes: int, in_channels: int
) -> Path:
    name = f"{device}--{space}--{preset}--{num_classes}c{in_channels}.json"
    return Path(artifact_dir) / "tables" / name


def _read_complete(path: Path) -> LatencyTable | None:
    from nas.hardware import read_table
    from nas.hardware.table import TableError

    if not path.exists():
        return None
    try:
        table = read_table(path)
    except TableError:
        return None  # unreadable (cut short): profiled again
    return table if table.complete else None


def host_table(
    artifact_dir: Path,
    device: str,
    space: str,
    preset: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> LatencyTable:
    """The latency table of built-in host ``device`` for ``space``/``preset``: profiled on this
    host the first time (quick plan), read from ``artifact_dir/tables/`` after.

    ``num_classes``/``in_channels`` size the stem and the classifier like the job's data
    (default: the preset's); they are part of the cached file's name.
    """
    import search_spaces
    from nas.hardware import builtin_devices

    devices = builtin_devices()
    if device not in devices:
        raise ValueError(
            f"device: {device!r} is not a built-in host device; allowed values: {sorted(devices)}"
        )
    if space not in search_spaces.names():
        raise ValueError(f"space: unknown {space!r}; allowed values: {search_spaces.names()}")
    sized: dict[str, int] = {}
    if num_classes is not None:
        sized["num_classes"] = num_classes
    if in_channels is not None:
        sized["in_channels"] = in_channels
    built = search_spaces.get(space, preset=preset, **sized)
    out = host_table_path(artifact_dir, device, space, preset, built.num_classes, built.in_channels)
    found = _read_complete(out)
    if found is not None:
        return found
    with _locked(out):
        found = _read_complete(out)  # another process may have finished it meanwhile
        if found is not None:
            return found
        return _profile(out, devices[device], built)


def _profile(out: Path, device: Any, space: Any) -> LatencyTable:
    from nas.hardware.profile import profile
    from nas.hardware.table import TableError

    try:  # resumes the blocks an interrupted profile measured
        table = profile(space, device, quick_plan(), out)  # type: ignore[arg-type]
    except TableError:  # measured with other software, or another plan: start over
        out.unlink(missing_ok=True)
        table = profile(space, device, quick_plan(), out)  # type: ignore[arg-type]
    if not table.complete:
        raise RuntimeError(
            f"device: profiling {device.name} for {space.name}/{space.preset} did not "
            "complete (the calibration failed on a noisy host); retry"
        )
    return table


def job_table(
    job_dir: Path,
    artifact_dir: Path,
    device: str,
    space: str,
    preset: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> LatencyTable:
    """The table the job searches ``device`` with: the registered device's copy in the job
    directory, or the host device's cached table."""
    from nas.hardware import BUILTIN_NAMES, check_table_for, read_table

    copied = Path(job_dir) / JOB_TABLES_DIR / f"{device}.json"
    if copied.exists():
        table = read_table(copied)
    elif device in BUILTIN_NAMES:
        table = host_table(
            artifact_dir, device, space, preset, num_classes=num_classes, in_channels=in_channels
        )
    else:
        raise FileNotFoundError(
            f"devices: no latency table for registered device {device!r} in {copied.parent} "
            "(the controller writes it when the job starts)"
        )
    check_table_for(table, space, preset)
    if table.device.name != device:
        raise ValueError(f"devices: the table for {device!r} was measured on {table.device.name!r}")
    return table
