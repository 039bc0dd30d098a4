"""``nas serve`` and the commands that talk to a running service through ``nas.client``:
``submit``, ``jobs``, ``watch``, ``pareto``, ``specialize``, ``download``.

Every client command takes ``--url`` (default ``nas.client.default_url()``: NAS_URL, else the
service that NAS_HOST/NAS_PORT start, else http://127.0.0.1:8000) and ``--token`` (NAS_TOKEN).
A refusal of the service is one line naming the field and the HTTP status, and
a non-zero exit; never a traceback.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from nas.client import DOWNLOAD_FORMATS, FINAL_STATES, WEIGHTS, Client, ClientError
from service.commands._common import console, err_console, fail, validation_message

# No envvar here: ``Client`` resolves the default (one place), and a URL given on the command
# line is then known to be one, so that printed follow-up commands can repeat it.
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The service; default NAS_URL, else http://NAS_HOST:NAS_PORT (127.0.0.1:8000).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="NAS_TOKEN", help="Bearer token (or NAS_TOKEN)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the service's JSON.")]


@contextmanager
def connect(url: str | None, token: str | None) -> Iterator[Client]:
    """A client whose errors end the command with one line."""
    try:
        client = Client(url, token)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        with client:
            yield client
    except ClientError as exc:
        where = f" (HTTP {exc.status})" if exc.status else ""
        raise fail(f"{exc}{where}") from None
    except (ValueError, TimeoutError) as exc:
        raise fail(str(exc)) from None


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


def _accuracy(subnet: dict[str, Any]) -> str:
    """Measured (else predicted, marked), and the fine-tuned figure beside it where the
    finetuning stage trained the subnet: ``95.10 -> 96.40 (fine-tuned)``."""
    tuned = subnet.get("finetuned_accuracy")  # absent from a service older than the stage
    if subnet["measured_accuracy"] is not None:
        shown = f"{subnet['measured_accuracy']:.2f}"
    elif subnet["predicted_accuracy"] is not None:
        shown = f"{subnet['predicted_accuracy']:.2f} (pred)"
    else:
        shown = "-"
    return shown if tuned is None else f"{shown} -> {tuned:.2f} (fine-tuned)"


def _latency(subnet: dict[str, Any], device: str) -> str:
    latency = subnet["latencies"].get(device)
    if latency is None:
        return "-"
    if latency["measured_ms"] is not None:
        return f"{latency['measured_ms']:.3f}"
    return "-" if latency["predicted_ms"] is None else f"{latency['predicted_ms']:.3f} (pred)"


def serve_command(
    host: Annotated[str | None, typer.Option(help="Default NAS_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default NAS_PORT (8000).")] = None,
) -> None:
    """Apply migrations and serve the API (what `make run` and `python -m service` do)."""
    from service.migrate import DatabaseStartError
    from service.server import serve
    from service.settings import Settings

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise fail(validation_message(exc)) from None
    try:
        serve(settings)
    except DatabaseStartError as exc:
        raise fail(str(exc)) from None


def submit_command(
    job_file: Annotated[Path, typer.Argument(help="Job YAML or JSON (see examples/).")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a search job to the service."""
    with connect(url, token) as client:
        job = client.submit(job_file)
    if as_json:
        _print_json(job)
        return
    # The environment that found the service finds it again; a --url must be repeated.
    where = f" --url {shlex.quote(url)}" if url else ""
    console.print(
        f"job {job['id']} {job['state']}: {job['name']} ({job['space']}/"
        f"{job['preset']}); follow it with `nas watch {job['id']}{where}`",
        markup=False,  # an IPv6 URL's [::1] is not rich markup
        highlight=False,
    )


def jobs_command(
    state: Annotated[
        list[str] | None, typer.Option(help="Only jobs in this state (repeat).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (1-500).")] = 50,
    offset: Annotated[int, typer.Option(help="Jobs to skip.")] = 0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with connect(url, token) as client:
        page = client.jobs(state=state, limit=limit, offset=offset)
    if as_json:
        _print_json(page)
        return
    table = Table(title=f"jobs ({len(page['data'])} of {page['count']})")
    for column in ("id", "name", "space", "state", "health", "progress", "created"):
        table.add_column(column, overflow="fold")
    for job in page["data"]:
        table.add_row(
            str(job["id"]),
            job["name"],
            f"{job['space']}/{job['preset']}",
            job["state"],
            _health_cell(job),
            f"{job['progress']:.0f}%",
            job["created_at"][:19],
        )
    console.print(table)
    warned = [job for job in page["data"] if job.get("warnings")]
    for job in warned:
        console.print(_warning_summary(job), highlight=False)


def _health_cell(job: dict[str, Any]) -> str:
    """ok, -, "1 warning" or "failed: <check>": what the health gates found."""
    checks = job.get("health") or []
    if not checks:
        return "-"
    fatal = [c["check"] for c in checks if not c["passed"] and c["action"] == "fail"]
    if fatal:
        return f"[red]failed: {', '.join(fatal)}[/]"
    count = len(job.get("warnings") or [])
    return f"[yellow]{count} warning{'s' if count != 1 else ''}[/]" if count else "ok"


def _warning_summary(job: dict[str, Any]) -> str:
    """``job 7 succeeded with 1 warning: ...``: each missed check, its figure and advice."""
    warnings = job["warnings"]
    lines = [
        f"[bold yellow]job {job['id']} {job['state']} with {len(warnings)} "
        f"warning{'s' if len(warnings) != 1 else ''}:[/]"
    ]
    for check in warnings:
        lines.append(f"  {check['check']}: {check['message']}")
        if check["advice"]:
            lines.append(f"    what to change: {check['advice']}")
    return "\n".join(lines)


def watch_command(
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    poll: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a job until it succeeds, fails or is cancelled: stage, epoch, losses, ETA."""
    with connect(url, token) as client:
        job = client.job(job_id)  # an unknown job ends here, before a bar is drawn
        if job["state"] not in FINAL_STATES:
            job = _follow(client, job_id, poll)
    if job.get("warnings"):  # prominent: a job that warned may not be worth using
        console.print(_warning_summary(job), highlight=False)
    if job["state"] != "succeeded":
        reason = f": {job['error']}" if job["error"] else ""
        err_console.print(f"[bold red]job {job_id} {job['state']}[/]{reason}", highlight=False)
        raise typer.Exit(code=1)
    count = len(job.get("warnings") or [])
    warned = f" with {count} warning{'s' if count != 1 else ''} (above)" if count else ""
    console.print(f"job {job_id} succeeded{warned}; `nas pareto {job_id}` shows its fronts")


def _follow(client: Client, job_id: int, poll: float) -> dict[str, Any]:
    """Poll the job under a live bar until it ends; a line above the bar for every new stage
    or epoch (so a log of the output, or a terminal's scrollback, keeps them); the final job."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    epochs = _EpochReports(client, job_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    printed = ""
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"job {job_id}", total=100.0, eta=_ETA_UNKNOWN)

        def show(job: dict[str, Any]) -> None:
            nonlocal printed
            status = _status(job, epochs.latest())
            eta = _eta(job, datetime.now(UTC))
            bar.update(
                task, completed=job["progress"], description=f"job {job_id} {status}", eta=eta
            )
            if status != printed and job["state"] not in FINAL_STATES:
                printed = status
                line = f"job {job_id} {status}, {job['progress']:.0f}%, {eta}"
                bar.console.print(line, markup=False, highlight=False)

        return client.watch(job_id, on_progress=show, poll_s=poll)


_ETA_UNKNOWN = "ETA --"


class _EpochReports:
    """The job's latest training-epoch report (epoch, losses, ...), read from its log as the
    log grows: the job itself carries only its stage and percent."""

    _PAGE = 1000  # the most the log endpoint returns at once

    def __init__(self, client: Client, job_id: int) -> None:
        self._client, self._job_id, self._after = client, job_id, 0
        self._latest: dict[str, Any] | None = None

    def latest(self) -> dict[str, Any] | None:
        while True:
            page = self._client.logs(self._job_id, after=self._after, limit=self._PAGE)
            for event in page["data"]:
                data = event["data"] or {}
                if event["kind"] == "metrics" and data.get("kind") == "epoch":
                    self._latest = data  # a redone epoch is logged again, with a newer id
            self._after = page["next_after"]
            if len(page["data"]) < self._PAGE:
                return self._latest


def _status(job: dict[str, Any], epoch: dict[str, Any] | None) -> str:
    """``training: epoch 3/10, loss max 0.812 min 1.204``, the stage running (a running job's
    state), or the state of a queued or ended job."""
    state = str(job["state"])
    if state != "training" or epoch is None:
        return state
    total = job["spec"].get("training", {}).get("epochs")
    status = f"{state}: epoch {epoch['epoch']}" + (f"/{total}" if total else "")
    losses = " ".join(f"{role} {value:.3f}" for role, value in epoch.get("losses", {}).items())
    return f"{status}, loss {losses}" if losses else status


def _eta(job: dict[str, Any], now: datetime) -> str:
    """Time left if the rest goes as fast as the part done so far; ``ETA --`` until a start
    time and some progress give a rate."""
    if job["state"] in FINAL_STATES:
        return ""
    progress, started = job["progress"], job["started_at"]
    if started is None or not 0 < progress < 100:
        return _ETA_UNKNOWN
    start = datetime.fromisoformat(started)
    elapsed = (now - (start if start.tzinfo else start.replace(tzinfo=UTC))).total_seconds()
    if elapsed <= 0:  # the service's clock is ahead of ours
        return _ETA_UNKNOWN
    left = round(elapsed * (100 - progress) / progress)
    hours, rest = divmod(left, 3600)
    return f"ETA {hours}h{rest // 60:02d}m" if hours else f"ETA {rest // 60}m{rest % 60:02d}s"


def _predicted(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_fronts(job_id: int, fronts: list[dict[str, Any]]) -> None:
    """One table per front: measured accuracy and latency beside the search's predictions,
    MACs and params; * marks the best."""
    if not fronts:
        console.print(f"job {job_id} has no Pareto fronts yet")
    for front in fronts:
        device = front["device"]
        budget = ", ".join(f"{k} <= {v:g}" for k, v in (front["budget"] or {}).items())
        table = Table(
            title=f"job {job_id} on {device}" + (f" (budget {budget})" if budget else ""),
            caption="acc: measured on val, from the supernet (-> after fine-tuning, measured "
            "on val); ms: measured (timed whole) unless marked (pred); pred: what the search "
            "believed (predictor, holdout split, latency table)",
        )
        table.add_column("", min_width=1, no_wrap=True)  # * marks the best
        for column in ("subnet", "acc %", "pred %", "ms", "pred ms", "MMACs", "Mparams"):
            table.add_column(column, no_wrap=True)
        table.add_column("arch_id", overflow="fold")
        for member in front["members"]:
            best = "*" if member["id"] == front["best_subnet_id"] else ""
            latency = member["latencies"].get(device) or {}
            table.add_row(
                best,
                str(member["id"]),
                _accuracy(member),
                _predicted(member["predicted_accuracy"], 2),
                _latency(member, device),
                _predicted(latency.get("predicted_ms"), 3),
                f"{member['macs'] / 1e6:.2f}",
                f"{member['params'] / 1e6:.3f}",
                member["arch_id"],
            )
        console.print(table)
        if front["best_subnet_id"] is not None:
            console.print(f"* best: `nas download {front['best_subnet_id']} --format onnx`")
            _print_finetuned(front)
        elif front["budget"]:
            console.print(f"no measured subnet meets the budget on {device}: nothing is picked")


def _print_finetuned(front: dict[str, Any]) -> None:
    """The best pick's fine-tuning, where the finetuning stage trained it: the two figures,
    the recipe that won, and where its weights are."""
    best = next((m for m in front["members"] if m["id"] == front["best_subnet_id"]), None)
    if best is None or best.get("finetuned_accuracy") is None:
        return
    finetune = best.get("finetune") or {}
    recipe = ", ".join(f"{k} {v:g}" for k, v in (finetune.get("recipe") or {}).items())
    lines = (
        f"  fine-tuned: {best['measured_accuracy']:.2f} -> {best['finetuned_accuracy']:.2f} % "
        f"on val, the best of {finetune.get('trials', '?')} recipes on holdout",
        f"  recipe: {recipe or '-'}",
        f"  fine-tuned weights: GET /api/v1/subnets/{best['id']}/download?format=finetuned",
    )
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def pareto_command(
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    device: Annotated[str | None, typer.Option(help="One device; default all.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's Pareto front(s): accuracy against latency, MACs and params."""
    with connect(url, token) as client:
        fronts = [client.front(job_id, device)] if device else client.fronts(job_id)
    if as_json:
        _print_json(fronts)
        return
    print_fronts(job_id, fronts)


def specialize_command(
    job_id: Annotated[int, typer.Argument(help="A succeeded job's id.")],
    device: Annotated[str, typer.Option(help="A built-in or registered device.")],
    latency_ms: Annotated[float | None, typer.Option(help="Latency budget (ms).")] = None,
    macs: Annotated[int | None, typer.Option(help="MACs budget.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the most accurate subnet of a finished job for a device under one budget."""
    if (latency_ms is None) == (macs is None):
        raise fail("budget: give exactly one of --latency-ms or --macs")
    with connect(url, token) as client:
        found = client.specialize(job_id, device, latency_ms=latency_ms, macs=macs)
    if as_json:
        _print_json(found)
        return
    subnet = found["subnet"]
    figures = found.get("figures", {})
    latency = figures.get("latency_ms", "")
    source = "one the job had measured" if found.get("from_job") else "newly found"
    console.print(
        f"subnet {subnet['id']} ({subnet['arch_id']}) for {found['device']} in "
        f"{found['seconds']:.1f} s, {source} (best of {found.get('candidates', '?')} measured): "
        f"accuracy {_accuracy(subnet)} % ({figures.get('accuracy', 'measured')} on val), "
        f"latency {_latency(subnet, found['device'])} ms{f' ({latency})' if latency else ''}, "
        f"{subnet['macs'] / 1e6:.2f} MMACs"
    )
    if found.get("rescaled"):
        console.print(
            f"the table's first proposals were all timed over the budget: proposed again with "
            f"its latencies rescaled by the measured {found['rescaled']:.2f}x"
        )
    console.print(f"download it: `nas download {subnet['id']} --format onnx --out subnet.onnx`")


def download_command(
    subnet_id: Annotated[int, typer.Argument(help="The subnet's id.")],
    format: Annotated[str, typer.Option(help="onnx | torchscript | pytorch")] = "onnx",
    out: Annotated[Path, typer.Option(help="A file, or a directory to save into.")] = Path("."),
    weights: Annotated[
        str | None,
        typer.Option(help="inherited | finetuned; default: the subnet's own.", show_default=False),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Download a subnet's file, checking its sha256; one not made yet is exported first
    (needs a token)."""
    if format not in DOWNLOAD_FORMATS:
        raise fail(f"format: {format!r}; allowed values: {list(DOWNLOAD_FORMATS)}")
    if weights is not None and weights not in WEIGHTS:
        raise fail(f"weights: {weights!r}; allowed values: {list(WEIGHTS)}")
    with connect(url, token) as client:
        path = client.download(subnet_id, format, out, weights=weights)
    console.print(f"{path} ({path.stat().st_size} bytes, sha256 verified)")
