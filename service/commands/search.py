"""``nas search job.yaml --table T --latency-ms 5``: search a trained supernet for subnets under
latency budgets, one Pareto front per device, with progress bars.

``job.yaml`` is the training job (``nas train``): its ``space``, ``preset``, ``dataset`` and
``output_dir`` (the job directory with the checkpoint; ``--job-dir`` overrides it). Each
``--table`` (a device's latency table from ``nas device profile --out``) pairs with the
``--latency-ms`` at the same position. ``workers.search.run_search_job`` does the work and
writes ``search.json`` into the job directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from nas.config_file import ConfigFileError, load_mapping
from service.commands._common import console, fail, validation_message


def _job(job_file: Path, options: dict[str, Any]) -> Any:
    try:
        raw = load_mapping(job_file, expected="a mapping with space, preset, dataset, output_dir")
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    from workers.search import SearchJob  # imports torch: a bad file is refused first

    fields: dict[str, Any] = {k: raw[k] for k in ("space", "preset", "dataset") if k in raw}
    fields["job_dir"] = options.pop("job_dir") or raw.get("output_dir")
    try:
        return SearchJob.model_validate({**fields, **options})
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None


def search_command(
    job_file: Annotated[Path, typer.Argument(help="The training job YAML.", exists=True)],
    table: Annotated[
        list[Path], typer.Option("--table", help="A device's latency table (repeat per device).")
    ],
    latency_ms: Annotated[
        list[float], typer.Option("--latency-ms", help="Budget per --table, in milliseconds.")
    ],
    job_dir: Annotated[Path | None, typer.Option(help="Overrides the job's output_dir.")] = None,
    strategy: Annotated[
        str, typer.Option(help="linas, evolution, nsga2, optuna_nsga2 or random.")
    ] = "linas",
    predictor: Annotated[
        str | None, typer.Option(help="auto, ridge, gbt or mlp (default: the strategy's).")
    ] = None,
    num_subnets: Annotated[int, typer.Option(help="Subnets measured from the supernet.")] = 100,
    verify: Annotated[int, typer.Option(help="Front subnets re-measured on val.")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same result.")] = 0,
    actors: Annotated[int, typer.Option(help="Ray actors measuring subnets.")] = 2,
    data_root: Annotated[
        Path | None, typer.Option(help="Defaults to NAS_DATA_ROOT (./data).")
    ] = None,
) -> None:
    """Find the most accurate subnets under each latency budget (a Pareto front per device)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if len(table) != len(latency_ms):
        raise fail(
            f"latency-ms: give one per --table ({len(table)} tables, {len(latency_ms)} budgets)"
        )
    options: dict[str, Any] = {
        "job_dir": job_dir,
        "devices": [{"table": t, "latency_ms": b} for t, b in zip(table, latency_ms, strict=True)],
        "strategy": {"kind": strategy},
        "num_subnets": num_subnets,
        "verify": verify,
        "seed": seed,
        "num_actors": actors,
    }
    if predictor is not None:
        options["predictor"] = {"kind": predictor, "seed": seed}
    job = _job(job_file, options)
    if data_root is None:
        from service.settings import Settings

        data_root = Settings().data_root
    from workers.search import run_search_job

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, Any] = {}

        def show(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = run_search_job(job, data_root=data_root, progress=show)
        except ValueError as exc:  # infeasible budgets, tables for another space, ...
            raise fail(str(exc)) from None
    for front in report.fronts:
        latency = f"latency:{front.device}"
        guess = front.result.best_subnet()
        console.print(
            f"{front.device}: {len(front.result.pareto)} subnets on the search-time front under "
            f"{front.latency_ms:g} ms"
            + (
                ""
                if guess is None
                else f"; the search's favourite {guess.id}: {guess.values['accuracy']:.2f}% "
                f"(predicted) at {guess.values[latency]:.3f} ms (table)"
            )
        )
        fits = []
        for v in front.verified:
            gap = "" if v.accuracy_gap is None else f" (predicted {v.predicted['accuracy']:.2f})"
            ms = v.measured_latency_ms
            timed = (
                "" if ms is None else f", {ms:.3f} ms measured (table {v.predicted[latency]:.3f})"
            )
            console.print(f"  {v.id}: {v.measured_accuracy:.2f}% measured on val{gap}{timed}")
            if (ms if ms is not None else v.predicted[latency]) <= front.latency_ms:
                fits.append(v)
        best = max(fits, key=lambda v: v.measured_accuracy, default=None)
        console.print(
            f"  best measured under {front.latency_ms:g} ms: "
            + ("none" if best is None else f"{best.id}, {best.measured_accuracy:.2f}% on val")
        )
    console.print(f"results in {job.job_dir / 'search.json'}")
