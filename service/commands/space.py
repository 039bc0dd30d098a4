"""``nas space``: what a search space holds, and what a given arch costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from service.commands._common import console, fail, validation_message

space_app = typer.Typer(help="Inspect search spaces and archs.", no_args_is_help=True)

PresetOption = Annotated[str, typer.Option(help="Preset of the space (imagenet, tiny, ...).")]


def _load_space(name: str, preset: str) -> Any:
    import search_spaces

    try:
        return search_spaces.get(name, preset=preset)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _millions(value: int) -> str:
    return f"{value / 1e6:,.2f}M"


@space_app.command("list")
def space_list() -> None:
    """List the registered search spaces and their presets."""
    import search_spaces

    table = Table(title="search spaces")
    table.add_column("space")
    table.add_column("presets")
    for name in search_spaces.names():
        table.add_row(name, ", ".join(search_spaces.presets(name)))
    console.print(table)


@space_app.command("show")
def space_show(
    name: Annotated[str, typer.Argument(help="Space name, see `nas space list`.")],
    preset: PresetOption = "tiny",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print a space's dimensions, number of subnets and MACs/params range."""
    space = _load_space(name, preset)
    summary = space.describe()
    references = {
        ref_name: space.complexity(arch) for ref_name, arch in space.reference_archs().items()
    }
    if as_json:
        payload = summary.model_dump(mode="json")
        payload["reference_archs"] = {
            ref: {"macs": c.macs, "params": c.params} for ref, c in references.items()
        }
        console.print_json(json.dumps(payload))
        return
    title = f"{summary.name} (preset {summary.preset}, {summary.num_classes} classes)"
    console.print(f"[bold]{title}[/]")
    dims = Table(title="dimensions")
    for column in ("dimension", "choices", "slots", "meaning"):
        dims.add_column(column)
    for dim in summary.dimensions:
        choices = ", ".join(str(c) for c in dim.choices)
        dims.add_row(dim.name, choices, str(dim.slots), dim.description)
    console.print(dims)
    console.print(f"resolutions: {', '.join(str(r) for r in summary.resolutions)}")
    console.print(
        f"subnets: {summary.num_subnets:.3e} ({summary.num_subnets_with_resolution:.3e} "
        "with resolution)"
    )
    console.print(
        f"at {summary.default_resolution}px: MACs {_millions(summary.min_macs)} .. "
        f"{_millions(summary.max_macs)}, params {_millions(summary.min_params)} .. "
        f"{_millions(summary.max_params)}"
    )
    refs = Table(title="reference archs")
    for column in ("arch", "MACs", "params"):
        refs.add_column(column)
    for ref_name, cost in references.items():
        refs.add_row(ref_name, _millions(cost.macs), _millions(cost.params))
    console.print(refs)


def read_arch_json(arch: str) -> dict[str, Any]:
    """The arch as inline JSON, a path to a JSON file, or ``-`` for standard input."""
    if arch == "-":
        text = sys.stdin.read()
    elif arch.lstrip().startswith("{"):
        text = arch
    else:
        path = Path(arch)
        if not path.is_file():
            raise fail(f"arch: {arch!r} is neither inline JSON nor a readable file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"arch: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise fail("arch: expected a JSON object")
    return data


@space_app.command("arch")
def space_arch(
    name: Annotated[str, typer.Argument(help="Space name, see `nas space list`.")],
    arch: Annotated[str, typer.Argument(help="Arch JSON, a .json file, or - for stdin.")],
    preset: PresetOption = "tiny",
    resolution: Annotated[
        int | None, typer.Option(help="Input side; default the arch's own resolution.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate an arch and print its id, MACs and params."""
    space = _load_space(name, preset)
    data = read_arch_json(arch)
    try:
        parsed = space.arch_from_dict(data)
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    used = resolution if resolution is not None else parsed.resolution
    if used not in space.resolutions:
        raise fail(f"resolution: {used} is not one of {list(space.resolutions)}")
    cost = space.complexity(parsed, used)
    if as_json:
        body = {"id": space.arch_id(parsed), "resolution": used, **cost._asdict()}
        console.print_json(json.dumps(body))
        return
    console.print(f"arch {space.arch_id(parsed)} of {space.name} ({space.preset}) at {used}px")
    console.print(f"MACs: {cost.macs:,} ({_millions(cost.macs)})")
    console.print(f"params: {cost.params:,} ({_millions(cost.params)})")
