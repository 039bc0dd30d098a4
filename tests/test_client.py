"""``nas.client`` and the client commands of the ``nas`` CLI against the real app, served by
uvicorn on a free port in a thread (SQLite; no dispatcher, so submitted jobs stay queued).

One server for the module: tests add jobs but never rely on being alone with them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _results import ORT, TORCH, Results, fill_results, job_spec
from _serving import serving
from test_api_jobs import SPEC, TOKEN
from typer.testing import CliRunner

from nas.client import Client, ClientError, default_url
from service.cli import app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import Job
from service.settings import Settings
from service.store import leases
from service.store.progress import record_events
from workers.events import Metrics, StageProgress, StageStarted

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-bignas.yaml"
runner = CliRunner()


class Served:
    def __init__(self, url: str, settings: Settings, results: Results) -> None:
        self.url, self.settings, self.results = url, settings, results

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.url, token=token, timeout=20.0)

    def cli(self, *args: str, token: str | None = TOKEN) -> Any:
        """Run ``nas <args>`` against the server (URL and token from the environment)."""
        env = {"NAS_URL": self.url, "NAS_TOKEN": token or "", "COLUMNS": "200"}
        return runner.invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{root / 'var' / 'nas.db'}"
    upgrade_database(url)
    (root / "data").mkdir()
    settings = Settings(database_url=url, artifact_dir=root / "var", data_root=root / "data",
                        api_tokens=[TOKEN], dispatcher_enabled=False)  # fmt: skip
    results = fill_results(settings)
    with serving(settings) as base:
        yield Served(base, settings, results)


# --- the Python client -------------------------------------------------------------------------


def test_a_job_from_submission_to_deletion(served: Served) -> None:
    with served.client() as nas:
        assert nas.health()["status"] == "ok"
        job = nas.submit(EXAMPLE)
        assert job["state"] == "queued" and job["space"] == "bignas"
        assert job["spec"]["devices"] == [ORT, TORCH]
        assert nas.job(job["id"]) == job
        assert job["id"] in [j["id"] for j in nas.jobs(state="queued", limit=500)["data"]]
        page = nas.jobs(state=["queued", "cancelled"], limit=1)
        assert len(page["data"]) == 1 and page["count"] >= 1 and page["limit"] == 1
        again = nas.submit(EXAMPLE, idempotency_key="example-1")
        assert nas.submit(EXAMPLE, idempotency_key="example-1")["id"] == again["id"]
        assert nas.cancel(job["id"])["state"] == "cancelled"
        seen: list[str] = []
        final = nas.watch(job["id"], on_progress=lambda j: seen.append(j["state"]), poll_s=0.05)
        assert final["state"] == "cancelled" and seen == ["cancelled"]
        messages = [line["message"] for line in nas.logs(job["id"])["data"]]
        assert messages[-1] == "cancelled while queued"
        nas.delete(job["id"])
        with pytest.raises(ClientError) as gone:
            nas.job(job["id"])
    assert gone.value.status == 404 and f"no job with id {job['id']}" in gone.value.message


def test_refusals_are_client_errors_naming_the_field(served: Served) -> None:
    job_id = served.results.job_id
    with served.client(token=None) as anonymous, pytest.raises(ClientError) as no_token:
        anonymous.submit(SPEC)
    assert no_token.value.status == 401 and "token" in no_token.value.message
    cases: list[tuple[Any, int, str | None]] = [
        (lambda c: c.submit({**SPEC, "space": "darts"}), 422, "space"),
        (lambda c: c.submit({**SPEC, "training": {"epochs": 0}}), 422, "training.epochs"),
        (lambda c: c.subnets(job_id, sort="size"), 422, "query.sort"),
        (lambda c: c.subnets(job_id, device="pi4-ort"), 422, "query.device"),
        (lambda c: c.specialize(job_id, "host-cpu-torch", macs=-3), 422, "macs"),
        (lambda c: c.job(99999), 404, None),
        (lambda c: c.front(job_id, "pi4-ort"), 404, None),
        (lambda c: c.subnet(99999), 404, None),
        (lambda c: c.download(99999, "onnx", served.settings.artifact_dir), 404, None),
    ]
    with served.client() as nas:
        queued = nas.submit(SPEC)["id"]
        cases.append((lambda c: c.specialize(queued, ORT, latency_ms=2.0), 409, None))
        for call, status, field in cases:
            with pytest.raises(ClientError) as error:
                call(nas)
            assert (error.value.status, error.value.field) == (status, field), error.value
            assert error.value.message and "Traceback" not in error.value.message
        with pytest.raises(ValueError, match="exactly one"):
            nas.specialize(job_id, ORT)
    with pytest.raises(ClientError) as unreachable, Client("http://127.0.0.1:9", timeout=2) as c:
        c.jobs()
    assert unreachable.value.status == 0 and "cannot reach" in unreachable.value.message
    with pytest.raises(ValueError, match="https"):
        Client("http://nas.example.org", token=TOKEN)


def test_results_and_a_verified_download(served: Served, tmp_path: Path) -> None:
    results = served.results
    with served.client() as nas:
        fronts = nas.fronts(results.job_id)
        assert [f["device"] for f in fronts] == [ORT, TORCH]
        assert nas.front(results.job_id, ORT) == fronts[0]
        on_front = nas.subnets(results.job_id, device=ORT, on_front=True, sort="accuracy")
        assert [s["id"] for s in on_front["data"]] == results.fronts[ORT]
        small = nas.subnets(results.job_id, max_macs=4_000_000, limit=2, offset=1)
        assert small["count"] == sum(r.macs <= 4_000_000 for r in results.rows)
        assert len(small["data"]) == 2 and small["offset"] == 1
        detail = nas.subnet(results.onnx_subnet)
        assert detail["artifacts"][0]["format"] == "onnx"
        saved = nas.download(results.onnx_subnet, "onnx", tmp_path)
        assert saved == tmp_path / f"subnet-{results.onnx_subnet}.onnx"
        assert saved.read_bytes() == results.onnx_bytes
        named = nas.download(results.onnx_subnet, "onnx", tmp_path / "best.onnx")
        assert named.read_bytes() == results.onnx_bytes


def test_a_download_that_does_not_match_its_checksum_is_not_saved(
    served: Served, tmp_path: Path
) -> None:
    """The file on the server changed after it was recorded: the client refuses it."""
    results = served.results
    stored = served.settings.artifact_dir / "jobs" / str(results.job_id) / "exports" / "best"
    original = (stored / "subnet.onnx").read_bytes()
    (stored / "subnet.onnx").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with served.client() as nas, pytest.raises(ClientError, match="checksum mismatch"):
            nas.download(results.onnx_subnet, "onnx", tmp_path / "subnet.onnx")
    finally:
        (stored / "subnet.onnx").write_bytes(original)
    assert list(tmp_path.iterdir()) == []


def test_the_default_url_is_the_service_nas_host_and_port_start(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NAS_PORT=18801 make run``, then ``nas submit`` in the same shell, reaches it."""
    port = str(urlsplit(served.url).port)
    assert default_url({}) == "http://127.0.0.1:8000"
    assert default_url({"NAS_HOST": "::", "NAS_PORT": "18801"}) == "http://[::1]:18801"
    monkeypatch.delenv("NAS_URL", raising=False)
    monkeypatch.setenv("NAS_HOST", "0.0.0.0")  # listens everywhere: connect to loopback
    monkeypatch.setenv("NAS_PORT", port)
    with Client(token=TOKEN) as nas:
        assert nas.url == served.url and nas.health()["status"] == "ok"
    monkeypatch.setenv("NAS_URL", served.url)
    monkeypatch.setenv("NAS_PORT", "9")  # nothing listens there: NAS_URL wins
    with Client() as nas:
        assert nas.health()["status"] == "ok"
    env = {"NAS_URL": None, "NAS_HOST": None, "NAS_PORT": port, "NAS_TOKEN": TOKEN}
    submitted = runner.invoke(app, ["submit", str(EXAMPLE)], env={**env, "COLUMNS": "200"})
    assert submitted.exit_code == 0, submitted.output
    job_id = int(submitted.output.split()[1])
    assert submitted.output.rstrip().endswith(f"follow it with `nas watch {job_id}`")
    # A --url given on the command line is repeated in the hint, so the hint works as printed.
    elsewhere = {**env, "NAS_PORT": "9", "COLUMNS": "200"}
    given = runner.invoke(app, ["submit", str(EXAMPLE), "--url", served.url], env=elsewhere)
    assert given.exit_code == 0, given.output
    hint = re.search(r"`(nas watch .*)`", given.output)
    assert hint is not None and hint.group(1).endswith(f"--url {served.url}")
    cancelled = runner.invoke(app, ["jobs", "--state", "cancelled"], env=elsewhere)
    assert cancelled.exit_code == 2 and "127.0.0.1:9" in cancelled.output


def test_the_client_never_imports_the_service() -> None:
    code = (
        "import sys, nas.client; "
        "heavy = ('service', 'workers', 'torch'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_submit_jobs_pareto_and_download(served: Served, tmp_path: Path) -> None:
    results = served.results
    submitted = served.cli("submit", str(EXAMPLE))
    assert submitted.exit_code == 0, submitted.output
    job_id = int(submitted.output.split()[1])
    assert f"nas watch {job_id}" in submitted.output
    listed = served.cli("jobs", "--state", "queued", "--limit", "500")
    assert listed.exit_code == 0 and str(job_id) in listed.output and "queued" in listed.output
    pareto = served.cli("pareto", str(results.job_id), "--device", ORT)
    assert pareto.exit_code == 0, pareto.output
    best = next(line for line in pareto.output.splitlines() if "*" in line and "│" in line)
    with served.client() as nas:
        front = nas.front(results.job_id, ORT)
    assert (
        str(front["best_subnet_id"]) in best
        and f"budget latency_ms <= {results.budget_ms:g}" in pareto.output
    )
    for member in front["members"]:
        assert member["arch_id"] in pareto.output
    out = tmp_path / "cli.onnx"
    download = served.cli(
        "download", str(results.onnx_subnet), "--format", "onnx", "--out", str(out)
    )
    assert download.exit_code == 0, download.output
    assert out.read_bytes() == results.onnx_bytes and "sha256 verified" in download.output
    watched = served.cli("watch", str(results.job_id), "--poll", "0.05")
    assert watched.exit_code == 0 and "succeeded" in watched.output
    with served.client() as nas:
        nas.cancel(job_id)
    stopped = served.cli("watch", str(job_id), "--poll", "0.05")
    assert stopped.exit_code == 1 and "cancelled" in stopped.output


WATCHER = "watch-test"


def _training_job(settings: Settings) -> int:
    """A job one minute into training, 40 % done, whose first of two epochs was reported: the
    rows the controller writes (``record_events``) for what the runner sends."""
    now = datetime.now(UTC)
    epoch = {"kind": "epoch", "epoch": 1, "step": 40, "total_steps": 80, "phase": "full",
             "lr": 0.05, "losses": {"max": 0.812, "min": 1.204}, "samples_per_s": 900.0,
             "max_val_acc": 61.5, "min_val_acc": 40.2, "sampler": {}}  # fmt: skip
    events = [
        StageStarted(seq=1, at=now, stage="training"),
        Metrics(
            seq=2, at=now, stage="training", key="training/epoch/1", message="epoch 1", data=epoch
        ),
        StageProgress(seq=3, at=now, stage="training", fraction=0.5, percent=40.0),
    ]
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            job = Job(name="watched", owner="local", space="bignas", preset="tiny",
                      spec=job_spec(1.0), state="training", attempt=1, claimed_by=WATCHER,
                      started_at=now - timedelta(minutes=1))  # fmt: skip
            session.add(job)
            session.commit()
            job_id = job.id
        with create_session_factory(engine)() as session:
            assert record_events(session, job_id, WATCHER, 1, events) == 3
    finally:
        engine.dispose()
    return job_id


def _finish(settings: Settings, job_id: int) -> None:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            assert leases.finish(session, job_id, WATCHER, 1, succeeded=True)
    finally:
        engine.dispose()


def test_cli_watch_shows_stage_epoch_losses_and_eta(served: Served) -> None:
    """The installed ``nas watch`` prints a line for the running stage; the job ends only once
    that line was read, so the test does not depend on timing."""
    job_id = _training_job(served.settings)
    nas = Path(sys.executable).with_name("nas")
    env = {**os.environ, "NAS_URL": served.url, "NAS_TOKEN": TOKEN, "COLUMNS": "200"}
    command = [str(nas), "watch", str(job_id), "--poll", "0.05"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as watcher:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()
        _finish(served.settings, job_id)
        rest, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, first + rest
    # 60 s for 40 %: 90 s to go (a few seconds more if the machine is slow).
    shown = rf"^job {job_id} training: epoch 1/2, loss max 0\.812 min 1\.204, 40%, ETA 1m\d\ds$"
    assert re.match(shown, first.strip()), first
    assert f"job {job_id} succeeded" in rest


def test_cli_watch_of_an_unknown_job_fails_before_drawing(served: Served) -> None:
    watched = served.cli("watch", "99999", "--poll", "0.05")
    assert watched.exit_code == 2
    assert "no job with id 99999 (HTTP 404)" in watched.output
    assert not set(watched.output) & set("━╸╺%"), watched.output  # no bar, no percent
    assert len(watched.output.strip().splitlines()) == 1


def test_cli_errors_are_one_line_without_a_traceback(served: Served, tmp_path: Path) -> None:
    job_id = str(served.results.job_id)
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: x\nspace: darts\n")
    cases = [
        (("jobs", "--state", "paused"), "query.state.0", None),
        (("submit", str(bad_spec)), "space", None),
        (("submit", str(tmp_path / "missing.yaml")), "cannot read", None),
        (("pareto", "99999"), "no job with id 99999", None),
        (("specialize", job_id, "--device", ORT), "exactly one of --latency-ms or --macs", None),
        (("specialize", job_id, "--device", "pi4-ort", "--macs", "1000"), "HTTP 404", None),
        (("download", "99999", "--format", "tflite"), "allowed values", None),
        (("submit", str(EXAMPLE)), "HTTP 401", "wrong-token-0123456789"),
        (("jobs", "--url", "ftp://x"), "http:// or https://", None),
    ]
    for args, expected, token in cases:
        result = served.cli(*args, token=token or TOKEN)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 2, (args, result.output)


def test_cli_serve_refuses_insecure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAS_API_TOKENS", raising=False)
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "NAS_API_TOKENS" in result.output
    assert "Traceback" not in result.output
