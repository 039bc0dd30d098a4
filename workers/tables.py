"""Latency tables for a job's devices: registered devices' from the job directory, built-in
host devices' profiled here once and cached.

A registered device's table was measured on the device itself and uploaded; the controller
copies it into ``job_dir/tables/<device>.json`` when it launches the job, so the runner needs
no database. The built-in host devices (``host-cpu-torch``, ``host-cpu-onnxruntime``) have no
uploaded table: the first job (or specialize request) that needs one profiles this host with a
quick plan and caches it under ``NAS_ARTIFACT_DIR/tables/``; a file lock keeps two processes
from profiling the same table at once.

A host table is re-anchored when it is taken (``nas.hardware.anchor``): a few of its
calibration networks are timed and its predictions scaled to the machine's level then, so a
budget in milliseconds is judged against the machine as it is, not as it was while the table
was profiled (a shared host's level drifts while the ranking of networks holds). The latest
anchor is kept in the cached table and reused while younger than ``ANCHOR_MAX_AGE_S``; every
anchor is also appended to ``<table>.anchors.jsonl`` beside it and logged. A registered
device cannot be timed here: its table is used as uploaded.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas.hardware.table import LatencyTable

logger = logging.getLogger(__name__)

#: Registered devices' tables inside a job directory.
JOB_TABLES_DIR = "tables"
#: A host table's anchor older than this (seconds) is measured again when the table is taken:
#: a job's searching stage and a specialize request judge budgets on a level at most this old.
ANCHOR_MAX_AGE_S = 300.0


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
    anchor_max_age_s: float | None = ANCHOR_MAX_AGE_S,
) -> LatencyTable:
    """The latency table of built-in host ``device`` for ``space``/``preset``: profiled on this
    host the first time (quick plan), read from ``artifact_dir/tables/`` after, and re-anchored
    to this host's level now unless its anchor is younger than ``anchor_max_age_s`` (``None``:
    the cached table as it is, last anchor included).

    ``num_classes``/``in_channels`` size the stem and the classifier like the job's data
    (default: the preset's); they are part of the cached file's name.
    """
    if anchor_max_age_s is not None and anchor_max_age_s < 0:
        raise ValueError(f"anchor_max_age_s: must be >= 0 or None, got {anchor_max_age_s!r}")
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
    if found is not None and _fresh_enough(found, anchor_max_age_s):
        return found
    with _locked(out):
        found = _read_complete(out)  # another process may have finished it meanwhile
        if found is None:
            found = _profile(out, devices[device], built)
        if _fresh_enough(found, anchor_max_age_s):
            return found
        return _reanchor(out, found, built)


def _fresh_enough(table: LatencyTable, max_age_s: float | None) -> bool:
    """Whether ``table`` may be used without timing an anchor now."""
    from nas.hardware.table import now

    if max_age_s is None:
        return True
    if table.anchor is None:
        return False
    return (now() - table.anchor.measured_at).total_seconds() <= max_age_s


def _reanchor(out: Path, table: LatencyTable, space: Any) -> LatencyTable:
    """Time the anchor networks now, keep the anchored table in the cache (the lock is held:
    no two processes time at once and disturb each other) and log the anchor beside it."""
    from nas.hardware import write_table
    from nas.hardware.anchor import reanchor

    anchored = reanchor(table, space=space)
    anchor = anchored.anchor
    assert anchor is not None
    write_table(anchored, out)
    with anchor_log_path(out).open("a") as log:
        log.write(anchor.model_dump_json() + "\n")
    logger.info("re-anchored %s: %s", table.describe(), anchor.describe())
    return anchored


def anchor_log_path(table_path: Path) -> Path:
    """Every anchor a cached host table was given, one JSON object a line."""
    return table_path.with_name(f"{table_path.stem}.anchors.jsonl")


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
    anchor_max_age_s: float | None = ANCHOR_MAX_AGE_S,
) -> LatencyTable:
    """The table the job searches ``device`` with: the registered device's copy in the job
    directory (as uploaded), or the host device's cached table re-anchored to this host's level
    (see ``host_table``)."""
    from nas.hardware import BUILTIN_NAMES, check_table_for, read_table

    copied = Path(job_dir) / JOB_TABLES_DIR / f"{device}.json"
    if copied.exists():
        table = read_table(copied)
    elif device in BUILTIN_NAMES:
        table = host_table(
            artifact_dir,
            device,
            space,
            preset,
            num_classes=num_classes,
            in_channels=in_channels,
            anchor_max_age_s=anchor_max_age_s,
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
