"""The ``nas`` command line: a typer app whose subcommands call the same functions as the API.

Heavy imports (torch, the data layer, the search spaces) happen inside the commands, so
``nas --version`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nas import __version__
from service.commands import client
from service.commands._common import console
from service.commands.data import data_app
from service.commands.demo import demo_command
from service.commands.device import device_app
from service.commands.finetune import finetune_command
from service.commands.search import search_command
from service.commands.space import space_app
from service.commands.train import train_command

app = typer.Typer(
    name="nas",
    help="nas-service: hardware-aware neural architecture search.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(space_app, name="space")
app.add_typer(device_app, name="device")
app.command("train")(train_command)
app.command("search")(search_command)
app.command("serve")(client.serve_command)
app.command("submit")(client.submit_command)
app.command("jobs")(client.jobs_command)
app.command("watch")(client.watch_command)
app.command("pareto")(client.pareto_command)
app.command("specialize")(client.specialize_command)
app.command("download")(client.download_command)
app.command("finetune")(finetune_command)
app.command("demo")(demo_command)


def _version(value: bool) -> None:
    if value:
        console.print(f"nas-service {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """nas-service: train a supernet once, search subnets for your device, export them."""
