"""``nas device``: profile latency tables on this machine, check them, send them to a service.

Runs on the target device with only this package installed: no service, no GPU, no network
unless ``--upload`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from service.commands._common import console, err_console, fail, validation_message

if TYPE_CHECKING:
    from nas.hardware import Device, LatencyTable

device_app = typer.Typer(help="Measure latency on this device.", no_args_is_help=True)

_PHASES = {
    "blocks": "measuring blocks",
    "calibration": "calibrating on whole networks",
    "validation": "measuring random subnets",
}
TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar="NAS_DEVICE_TOKEN", help="Bearer token for --upload (or NAS_DEVICE_TOKEN)."
    ),
]


@contextmanager
def _progress_bar() -> Iterator[Any]:
    """A rich bar per phase; yields the ``progress(phase, done, total)`` callback."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _device(
    name: str | None,
    runtime: str,
    threads: int | None,
    batch_size: int | None,
    hardware: str | None,
) -> Device:
    from nas.hardware import Device, builtin_devices
    from nas.hardware.device import host_description

    builtin = builtin_devices()
    chosen = name or f"host-cpu-{runtime}"
    if chosen in builtin:
        base = builtin[chosen]
        if base.runtime != runtime:
            raise fail(
                f"runtime: device {chosen!r} measures with {base.runtime!r}, not {runtime!r}"
            )
        for option, value in (("threads", threads), ("batch_size", batch_size)):
            if value is not None and value != getattr(base, option):
                raise fail(
                    f"{option}: the built-in device {chosen!r} uses {getattr(base, option)}; "
                    f"give --device NAME to measure with {value}"
                )
        return base
    try:
        return Device(
            name=chosen,
            runtime=runtime,  # type: ignore[arg-type]
            threads=threads or 1,
            batch_size=batch_size or 1,
            hardware=host_description() if hardware is None else hardware,
        )
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None


def _timing(warmup: int, min_repeats: int, budget_s: float, field: str) -> Any:
    from nas.hardware import TimingPolicy

    try:
        return TimingPolicy(warmup=warmup, min_repeats=min_repeats, budget_s=budget_s)
    except ValidationError as exc:
        raise fail(f"{field}: {validation_message(exc)}") from None


def _upload(table: LatencyTable, url: str, token: str | None) -> None:
    from nas.hardware.upload import UploadError, upload_table

    if not token:
        raise fail("token: --upload needs --token (or NAS_DEVICE_TOKEN)")
    try:
        upload_table(table, url, token)
    except (ValueError, UploadError) as exc:
        raise fail(f"upload: {exc} (the table is kept on disk)") from None
    console.print(f"uploaded to {url} as device {table.device.name!r}")


@device_app.command("list")
def device_list(
    store: Annotated[
        Path | None, typer.Option(help="A device store directory to list as well.")
    ] = None,
) -> None:
    """List the built-in devices (and those registered in --store)."""
    from nas.hardware import JsonDirectoryStore, builtin_devices

    devices = list(builtin_devices().values())
    if store is not None:
        try:
            devices = JsonDirectoryStore(store).devices()
        except ValueError as exc:
            raise fail(f"store: {exc}") from None
    table = Table(title="devices")
    table.add_column("name", no_wrap=True)
    for column in ("runtime", "accelerator", "batch", "threads", "dtype"):
        table.add_column(column)
    table.add_column("hardware", overflow="fold")
    for d in devices:
        table.add_row(d.name, d.runtime, d.accelerator, str(d.batch_size), str(d.threads),
                      d.dtype, d.hardware)  # fmt: skip
    console.print(table)


@device_app.command("profile")
def device_profile(
    space: Annotated[str, typer.Option(help="Search space, see `nas space list`.")],
    out: Annotated[Path, typer.Option(help="Table file; continued if it exists.")],
    preset: Annotated[str, typer.Option(help="Preset of the space.")] = "tiny",
    runtime: Annotated[str, typer.Option(help="torch | onnxruntime")] = "torch",
    device: Annotated[
        str | None, typer.Option(help="Device name; default host-cpu-<runtime>.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (new devices).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per pass (new devices).")] = None,
    hardware: Annotated[str | None, typer.Option(help="Free-form hardware description.")] = None,
    resolution: Annotated[
        list[int] | None, typer.Option(help="Resolution to cover (repeat); default all.")
    ] = None,
    statistic: Annotated[
        str | None,
        typer.Option(help="median | min; default min for onnxruntime, median for torch."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Whole networks for the calibration (>= 20).")] = 30,
    warmup: Annotated[int, typer.Option(help="Untimed runs before each measurement.")] = 10,
    min_repeats: Annotated[int, typer.Option(help="Timed runs per measurement, at least.")] = 15,
    block_budget: Annotated[float, typer.Option(help="Seconds per block, at most.")] = 2.0,
    network_budget: Annotated[float, typer.Option(help="Seconds per network, at most.")] = 3.0,
    max_entries: Annotated[
        int | None, typer.Option(help="Stop after this many new blocks (continue later).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the calibration networks.")] = 0,
    fresh: Annotated[bool, typer.Option(help="Start over instead of continuing --out.")] = False,
    recalibrate: Annotated[
        bool, typer.Option(help="Measure the calibration networks again.")
    ] = False,
    drift_correction: Annotated[
        bool, typer.Option(help="Scale figures by a reference module measured beside them.")
    ] = True,
    upload: Annotated[str | None, typer.Option(help="Service URL to send the table to.")] = None,
    token: TokenOption = None,
) -> None:
    """Measure a latency lookup table for a space and preset on this device."""
    from nas.hardware import TableError
    from nas.hardware.profile import ProfilePlan, profile

    spec = _load_space(space, preset)
    chosen = _device(device, runtime, threads, batch_size, hardware)
    if upload is not None and not token:
        raise fail("token: --upload needs --token (or NAS_DEVICE_TOKEN)")
    try:
        plan = ProfilePlan(
            resolutions=resolution or None,
            statistic=statistic,  # type: ignore[arg-type]
            block_timing=_timing(warmup, min_repeats, block_budget, "block_budget"),
            network_timing=_timing(warmup, min_repeats, network_budget, "network_budget"),
            calibration_samples=samples,
            seed=seed,
            max_entries=max_entries,
            drift_correction=drift_correction,
        )
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    try:
        with _progress_bar() as progress:
            table = profile(spec, chosen, plan, out, progress=progress, resume=not fresh,
                            recalibrate=recalibrate)  # fmt: skip
    except (TableError, ValueError) as exc:
        raise fail(str(exc)) from None
    done = len(table.entries)
    if not table.complete:
        console.print(f"{out}: {done} of {table.expected_entries} blocks measured; run again "
                      "to continue")  # fmt: skip
        return
    assert table.calibration is not None
    cal = table.calibration
    per_block = f", {cal.per_block_ms:+.4f} ms per block" if cal.per_block_ms else ""
    loo = f", {cal.loo_mape:.1%} error left out one at a time" if cal.loo_mape is not None else ""
    console.print(
        f"{out}: {done} blocks, calibration slope {cal.slope:.3f} intercept "
        f"{cal.intercept_ms:.3f} ms{per_block} (r2 {cal.r2:.3f}{loo}, {cal.samples} networks)"
    )
    if upload is not None:
        _upload(table, upload, token)


@device_app.command("validate")
def device_validate(
    table_path: Annotated[Path, typer.Argument(metavar="TABLE", help="A table file.")],
    samples: Annotated[int, typer.Option(help="Random subnets to measure whole (>= 2).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the subnets.")] = 1,
    budget: Annotated[
        float | None, typer.Option(help="Seconds per network; default the table's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure random subnets whole and print how far the table's predictions are."""
    from nas.hardware import TableError, TimingPolicy, read_table
    from nas.hardware.profile import validate

    if samples < 2:
        raise fail(f"samples: must be >= 2, got {samples}")
    try:
        table = read_table(table_path)
        _load_space(table.space, table.preset)
        timing = None
        if budget is not None:
            policy = {**table.network_timing.model_dump(), "budget_s": budget}
            timing = TimingPolicy.model_validate(policy)
        with _progress_bar() as progress:
            result = validate(table, samples, seed=seed, timing=timing, progress=progress)
    except ValidationError as exc:
        raise fail(f"budget: {validation_message(exc)}") from None
    except (TableError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(result.model_dump(mode="json")))
        return
    report = Table(
        title=f"{table.space} ({table.preset}) on {table.device.name}, {samples} subnets"
    )
    for column in ("predictor", "within +-10%", "MAPE", "Kendall tau", "worst error"):
        report.add_column(column)
    for label, fid in (("lookup table", result.table), ("MACs proxy", result.macs_proxy)):
        report.add_row(label, f"{fid.within_10pct:.0%}", f"{fid.mape:.1%}",
                       f"{fid.kendall_tau:.3f}", f"{fid.worst_error:.1%}")  # fmt: skip
    console.print(report)


@device_app.command("upload")
def device_upload(
    table_path: Annotated[Path, typer.Argument(metavar="TABLE", help="A finished table file.")],
    url: Annotated[str, typer.Option(help="Service URL, e.g. https://nas.example.org.")],
    token: TokenOption = None,
) -> None:
    """Send a finished table to a nas-service."""
    from nas.hardware import TableError, read_table

    try:
        table = read_table(table_path)
    except TableError as exc:
        raise fail(str(exc)) from None
    if not table.complete:
        raise fail(f"table: {table_path} is not finished; run `nas device profile` again")
    _upload(table, url, token)


def _load_space(name: str, preset: str) -> Any:
    import search_spaces

    try:
        return search_spaces.get(name, preset=preset)
    except ValueError as exc:
        raise fail(f"space: {exc}") from None
