"""``nas finetune``: fine-tune one subnet standalone from its inherited weights, on Ray Tune.

Two ways, exactly one per call:

- ``nas finetune SUBNET_ID``: the service does it (``POST /api/v1/subnets/{id}/finetune``,
  through ``nas.client``, ``--url``/``--token`` as the other client commands), and the command
  follows its task with a progress bar (``--no-wait``: queue it and return);
- ``nas finetune --job-dir DIR --arch ARCH JOB_YAML``: here, without the service, like
  ``nas search``: ``DIR`` is a trained job directory (a ``nas train`` output, or a service
  job's ``var/jobs/<id>``), the YAML says what it was trained on (``space``, ``preset``,
  ``dataset``, ``training``, as for ``nas train``, and its ``finetune`` settings if it has
  some), ``ARCH`` an arch id of the directory's ``search.json`` or ``results.json``, or an arch
  as JSON (inline or a file).

Both print the subnet's accuracy inherited from the supernet and after fine-tuning, each
measured on val, and the recipe that won (chosen on holdout). The settings flags change the
job's own ``finetune`` settings (``workers.spec.FinetuneSettings.changed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from nas.client import Client
from nas.config_file import ConfigFileError, load_mapping
from service.commands._common import console, err_console, fail, validation_message
from service.commands.client import TokenOption, UrlOption, connect
from service.commands.space import read_arch_json

_ACTIVE = ("queued", "running")


def _recipe(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value:.3g}" for name, value in recipe.items()) or "-"


def _print_line(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


# --- through the service -------------------------------------------------------------------------


def _follow(client: Client, subnet_id: int, poll: float) -> dict[str, Any]:
    """Poll the task under a live bar until it ends; its final status."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"subnet {subnet_id}", total=100.0)

        def show(status: dict[str, Any]) -> None:
            where = f" ({status['position']} ahead)" if status.get("position") else ""
            stopping = ", stopping" if status.get("cancel_requested") else ""
            bar.update(
                task,
                completed=100.0 * status["progress"],
                description=f"subnet {subnet_id} {status['state']}{where}{stopping}",
            )

        return client.wait_finetune(subnet_id, poll_s=poll, on_state=show)


def _print_status(subnet_id: int, status: dict[str, Any], where: str) -> None:
    """Both accuracies and the recipe of a succeeded task; how to follow an unfinished one;
    the reason and exit code 1 for one that failed or was cancelled."""
    state = status["state"]
    if state in _ACTIVE:
        _print_line(
            f"subnet {subnet_id}: fine-tuning {state}; follow it with "
            f"`nas finetune {subnet_id}{where}`"
        )
        return
    if state != "succeeded":
        reason = f": {status['error']}" if status.get("error") else ""
        err_console.print(
            f"[bold red]subnet {subnet_id}'s fine-tuning {state}[/]{reason}", highlight=False
        )
        raise typer.Exit(code=1)
    inherited = status["inherited_accuracy"]
    shown = "-" if inherited is None else f"{inherited:.2f}%"
    _print_line(
        f"subnet {subnet_id}: inherited {shown} -> fine-tuned {status['finetuned_accuracy']:.2f}% "
        f"(measured on {status['measured_on']})"
    )
    figures = status.get("finetune") or {}
    _print_line(
        f"  recipe: {_recipe(figures.get('recipe') or {})} (the best of "
        f"{figures.get('trials', '?')} on holdout, {figures.get('stopped_early', 0)} stopped early)"
    )
    _print_line(f"  weights: `nas download {subnet_id} --format finetuned{where}`")


def _on_the_service(
    subnet_id: int,
    changes: dict[str, Any],
    wait: bool,
    poll: float,
    url: str | None,
    token: str | None,
) -> None:
    with connect(url, token) as client:
        status = client.finetune(subnet_id, **changes)
        if wait and status["state"] in _ACTIVE:
            status = _follow(client, subnet_id, poll)
    _print_status(subnet_id, status, f" --url {url}" if url else "")


# --- here, without the service -------------------------------------------------------------------


def _job_file(job_file: Path, job_dir: Path) -> tuple[Any, Any]:
    """The job YAML as ``workers.training.TrainJob`` (its output directory: ``job_dir``) and
    its own ``finetune`` settings (the defaults where it has none); other keys (a service
    spec's ``search``, ``devices``, ...) are left alone."""
    try:
        raw = load_mapping(job_file, expected="a mapping with space, preset, dataset, training")
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    # torch: a bad file is refused first
    from workers.spec import FinetuneSettings
    from workers.training import TrainJob

    fields = {k: raw[k] for k in ("space", "preset", "dataset", "training") if k in raw}
    try:
        job = TrainJob.model_validate({**fields, "output_dir": job_dir})
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    try:
        own = FinetuneSettings.model_validate(raw.get("finetune") or {})
    except ValidationError as exc:
        raise fail(f"finetune: {validation_message(exc)}") from None
    return job, own


def _archs_on_disk(job_dir: Path) -> dict[str, dict[str, Any]]:
    """arch id -> arch of every subnet the directory's results name: a service job's
    ``results.json``, ``nas search``'s ``search.json`` (its fronts' candidates)."""
    from workers.results import RESULTS_NAME, read_results
    from workers.search import RESULT_NAME, SearchReport

    archs: dict[str, dict[str, Any]] = {}
    results, search = job_dir / RESULTS_NAME, job_dir / RESULT_NAME
    if search.is_file():
        try:
            report = SearchReport.model_validate_json(search.read_bytes())
        except ValueError as exc:
            raise fail(f"arch: {search} is not a search report ({type(exc).__name__})") from None
        for front in report.fronts:
            archs.update({s.id: s.arch for s in front.result.subnets})
            archs.update({v.id: v.arch for v in front.verified})
    if results.is_file():
        try:
            archs.update({s.arch_id: s.arch for s in read_results(results).subnets})
        except ValueError as exc:
            raise fail(str(exc)) from None
    return archs


def _arch(job_dir: Path, given: str) -> dict[str, Any]:
    """``--arch``: an arch id the directory's results name, else an arch as JSON."""
    known = _archs_on_disk(job_dir)
    if given in known:
        return known[given]
    if given != "-" and not given.lstrip().startswith("{") and not Path(given).is_file():
        raise fail(
            f"arch: {given!r} is neither an arch id of {job_dir}'s search.json or results.json "
            f"({len(known)} known) nor an arch as JSON (inline, or a file)"
        )
    return read_arch_json(given)


def _locally(
    job_dir: Path,
    job_file: Path,
    given_arch: str,
    changes: dict[str, Any],
    data_root: Path | None,
) -> None:
    job, own = _job_file(job_file, job_dir)
    try:
        settings = own.changed(**changes)
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    from workers.trained import JobFiles, checkpoint_path

    if not checkpoint_path(job_dir).is_file():
        raise fail(f"job-dir: {job_dir} holds no trained supernet ({checkpoint_path(job_dir)})")
    arch = _arch(job_dir, given_arch)
    if data_root is None:
        from service.settings import Settings

        data_root = Settings().data_root
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from workers.finetuning import finetune_arch

    files = JobFiles(
        job_dir=job_dir,
        space=job.space,
        preset=job.preset,
        dataset=job.dataset,
        data_root=data_root,
    )
    try:
        trained = files.load()
        parsed = trained.space.arch_from_dict(arch)
    except ValidationError as exc:
        raise fail(f"arch: {validation_message(exc)}") from None
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    inherited = float(trained.measure_val([parsed])[0])
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{parsed.id}: trial epochs", total=None)

        def epochs(reported: int, budget: int) -> None:
            bar.update(task, completed=reported, total=budget)

        def log(message: str) -> None:
            bar.console.print(message, markup=False, highlight=False)

        try:
            result = finetune_arch(
                files, arch, settings, training=job.training, log=log, on_epoch=epochs
            )
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise fail(str(exc)) from None
    _print_line(
        f"{parsed.id}: inherited {inherited:.2f}% -> fine-tuned {result.accuracy:.2f}% "
        "(measured on val)"
    )
    _print_line(
        f"  recipe: {_recipe(result.recipe)} (the best of {result.trials} on holdout, "
        f"{result.stopped_early} stopped early)"
    )
    _print_line(f"  weights: {job_dir / result.weights}")


# --- the command -------------------------------------------------------------------------------


def finetune_command(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="SUBNET_ID | JOB_YAML",
            help="A subnet's id: the service fine-tunes it. With --job-dir: the job YAML "
            "(space, preset, dataset, training, as for `nas train`).",
            show_default=False,
        ),
    ] = None,
    job_dir: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune here, without the service: a trained job directory (a `nas train` "
            "output, or a service job's var/jobs/<id>).",
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="With --job-dir: an arch id of the directory's search.json or results.json, "
            "or an arch as JSON (inline, or a .json file)."
        ),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="Recipes tried (Ray Tune trials); default the job's.")
    ] = None,
    max_epochs: Annotated[
        int | None, typer.Option(help="Most epochs one trial runs; default the job's.")
    ] = None,
    grace_epochs: Annotated[
        int | None,
        typer.Option(help="Epochs before ASHA may stop a trial; default the job's (at most max)."),
    ] = None,
    distill: Annotated[
        bool | None,
        typer.Option(
            "--distill/--no-distill",
            help="Distil from the supernet's largest subnet; default the job's.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler; default the job's.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the service's task to its end.")
    ] = True,
    poll: Annotated[float, typer.Option(help="Seconds between polls of the service.")] = 1.0,
    data_root: Annotated[
        Path | None, typer.Option(help="With --job-dir; defaults to NAS_DATA_ROOT (./data).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Fine-tune one subnet from its inherited weights (Ray Tune, recipes chosen on holdout):
    on the service (SUBNET_ID) or here (--job-dir)."""
    changes = {
        "samples": samples,
        "max_epochs": max_epochs,
        "grace_epochs": grace_epochs,
        "distill": distill,
        "seed": seed,
    }
    is_id = target is not None and target.isdigit()
    if job_dir is None:
        if target is None:
            raise fail(
                "give a SUBNET_ID (the service fine-tunes it) or --job-dir DIR --arch ARCH "
                "JOB_YAML (here)"
            )
        if not is_id:
            raise fail(
                f"SUBNET_ID: {target!r} is not a subnet id; to fine-tune here, give "
                "--job-dir DIR --arch ARCH with the job YAML"
            )
        if arch is not None or data_root is not None:
            raise fail("arch: --arch and --data-root go with --job-dir (fine-tuning here)")
        _on_the_service(int(target), changes, wait, poll, url, token)
        return
    if is_id:
        raise fail(f"give either SUBNET_ID ({target}: the service) or --job-dir (here), not both")
    if target is None:
        raise fail(
            "JOB_YAML: --job-dir needs the job YAML (space, preset, dataset, training): a job "
            "directory's results.json does not record them"
        )
    if arch is None:
        raise fail("arch: --job-dir needs --arch (an arch id of its results, or an arch JSON)")
    _locally(job_dir, Path(target), arch, changes, data_root)
