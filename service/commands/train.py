"""``nas train job.yaml``: train a supernet (Ray Train by default) with a live progress bar.

The YAML holds ``space``, ``preset``, ``dataset`` (``DatasetSpec`` fields), ``training``
(``TrainingConfig`` fields) and ``output_dir``; ``workers.training.TrainJob`` validates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from nas.config_file import ConfigFileError, load_mapping
from service.commands._common import console, fail, validation_message


def _read_job(path: Path, overrides: dict[str, Any]) -> Any:
    try:
        raw = load_mapping(path, expected="a mapping with space, dataset, training, output_dir")
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    from workers.training import TrainJob  # imports torch: a bad file is refused first

    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainJob.model_validate(raw)
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None


def train_command(
    job_file: Annotated[Path, typer.Argument(help="Job YAML (see examples/).", exists=True)],
    workers: Annotated[
        int | None, typer.Option("--workers", help="Ray Train workers (default: the job's).")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Train in this process, without Ray.")
    ] = False,
    output_dir: Annotated[Path | None, typer.Option(help="Overrides the job's.")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Defaults to NAS_DATA_ROOT (./data).")
    ] = None,
) -> None:
    """Train a weight-sharing supernet; checkpoints every epoch, resumes when re-run."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    job = _read_job(job_file, {"num_workers": workers, "output_dir": output_dir})
    if data_root is None:
        from service.settings import Settings

        data_root = Settings().data_root
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{job.space}/{job.preset}", total=None, status="starting")

        def show(event: dict[str, Any]) -> None:
            losses = " ".join(f"{k}={v:.3f}" for k, v in event["losses"].items())
            status = (
                f"{event['phase']} lr={event['lr']:.4f} {losses} {event['samples_per_s']:.0f} img/s"
            )
            bar.update(task, total=event["total_steps"], completed=event["step"], status=status)
            if event["kind"] == "epoch" and event["max_val_acc"] is not None:
                bar.console.print(
                    f"epoch {event['epoch']}: max subnet {event['max_val_acc']:.2f}%, "
                    f"min subnet {event['min_val_acc']:.2f}%"
                )

        try:
            if local:
                from workers.training import train_local

                metrics = train_local(job, progress=show, data_root=data_root)
            else:
                from workers.training import train_distributed

                metrics = train_distributed(job, progress=show, data_root=data_root)
        except ValueError as exc:
            raise fail(str(exc)) from None
    console.print(
        f"done: max subnet {metrics.get('max_val_acc', float('nan')):.2f}%, "
        f"min subnet {metrics.get('min_val_acc', float('nan')):.2f}%; "
        f"checkpoint in {job.output_dir / 'latest.pt'}"
    )
