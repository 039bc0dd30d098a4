"""``nas data``: inspect datasets (splits, sizes, classes, resolution)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from service.commands._common import console, fail, validation_message

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)


@data_app.command("show")
def data_show(
    dataset: Annotated[
        str,
        typer.Argument(
            help="digits | fashion_mnist | cifar10 | cifar100 | idx | imagefolder | synthetic"
        ),
    ],
    root: Annotated[
        str | None, typer.Option(help="Directory of the dataset, inside the data root.")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Defaults to NAS_DATA_ROOT (./data).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
    resolution: Annotated[int, typer.Option(help="Base image side in pixels.")] = 32,
    channels: Annotated[int, typer.Option(help="1 or 3.")] = 3,
    val_fraction: Annotated[float, typer.Option(help="Val share when no val split.")] = 0.2,
    holdout_fraction: Annotated[float, typer.Option(help="Holdout share of train.")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print a dataset's splits, sizes, classes and resolution."""
    from nas.data import DataPathError, DatasetSpec, UnsafePickleError, load_dataset

    try:
        spec = DatasetSpec.model_validate(
            {
                "kind": dataset,
                "root": root,
                "seed": seed,
                "resolution": resolution,
                "channels": channels,
                "val_fraction": val_fraction,
                "holdout_fraction": holdout_fraction,
            }
        )
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    if data_root is None:
        from service.settings import Settings

        data_root = Settings().data_root
    try:
        summary = load_dataset(spec, data_root=data_root).summary()
    except (DataPathError, UnsafePickleError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(summary.model_dump()))
        return
    table = Table(title=f"{summary.kind} ({summary.num_classes} classes)")
    for column in ("split", "images", "augmentation"):
        table.add_column(column)
    for split in summary.splits:
        table.add_row(split.name, str(split.size), split.augmentation)
    console.print(table)
    shown = ", ".join(summary.class_names[:20]) + (" ..." if summary.num_classes > 20 else "")
    console.print(f"classes: {summary.num_classes} ({shown})")
    console.print(
        f"resolution: {summary.resolution}x{summary.resolution}, channels: {summary.channels}, "
        f"seed: {summary.seed}"
    )
