"""Fine-tuning one subnet on request (issue 29, items 2 and 3): ``POST/GET/DELETE
/api/v1/subnets/{id}/finetune`` as a tracked task on a real local Ray Tune and a real SQLite
database, ``nas.client``'s fine-tuning calls, and ``nas finetune`` through the service and
here (``--job-dir``), on a tiny ofa_mbv3 supernet trained once for the module on digits.

The fine-tunings are as small as they come (1 recipe, 1 epoch) except the one cancelled, which
must still be running when the DELETE comes.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml
from _jobs import wait_until
from _serving import serving
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_api_jobs import AUTH, TOKEN, _field_errors, _settings
from typer.testing import CliRunner

import search_spaces
from nas.client import Client, ClientError
from service.api.schemas.jobs import JobCreate
from service.app import create_app
from service.cli import app as cli_app
from service.db import create_db_engine, create_session_factory
from service.exports import QueueFullError
from service.finetunes import FinetuneQueue
from service.migrate import upgrade_database
from service.models import Artifact, Job, Subnet
from service.settings import Settings
from service.store.results import ingest_results
from workers.finetuning import experiment_path, record_path, weights_path
from workers.relay import relayed
from workers.results import RESULTS_NAME, FinetunedResult, JobResults, SubnetResult, read_results
from workers.spec import FinetuneSettings, job_dir
from workers.trained import JobFiles
from workers.training import TrainJob, train_local

pytestmark = pytest.mark.usefixtures("one_thread")

API = "/api/v1"
SPACE, PRESET = "ofa_mbv3", "tiny"
DATASET = {"kind": "digits", "max_train_images": 480}
TRAINING = {
    "epochs": 1,
    "batch_size": 32,
    "warmup_epochs": 0.0,
    "bn_recalibration_batches": 2,
    "schedule": "single_stage",
    "sampler": "uniform",
}
#: The job's own fine-tuning settings, what a request without a body runs with.
TINY: dict[str, Any] = {
    "subnets": 1,
    "samples": 1,
    "max_epochs": 1,
    "grace_epochs": 1,
    "distill": False,
}
#: Subnets of the service job, by the test that uses them.
ROLES = ("tuned", "cancelled", "spare")
INHERITED_TO_TUNED = re.compile(
    r"inherited (\d+\.\d\d)% -> fine-tuned (\d+\.\d\d)% \(measured on val\)"
)
runner = CliRunner()


@dataclass
class Trained:
    """A supernet trained here as ``nas train job.yaml`` leaves it."""

    root: Path
    job_file: Path
    run_dir: Path

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def files(self, directory: Path) -> JobFiles:
        return JobFiles(
            job_dir=directory,
            space=SPACE,
            preset=PRESET,
            dataset=DATASET,  # type: ignore[arg-type]
            data_root=self.data_root,
        )


@dataclass
class Service:
    """A succeeded service job with the trained supernet and three measured subnets."""

    settings: Settings
    sessions: sessionmaker[Session]
    client: TestClient
    url: str
    job_id: int
    subnets: dict[str, int]  # role -> subnet id
    results: JobResults

    @property
    def job_dir(self) -> Path:
        return job_dir(self.settings.artifact_dir, self.job_id)

    def subnet(self, role: str) -> SubnetResult:
        return self.results.subnets[ROLES.index(role)]

    def row(self, role: str) -> Subnet:
        with self.sessions() as session:
            return session.get_one(Subnet, self.subnets[role])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("finetune-on-demand")
    (root / "data").mkdir()
    run_dir = root / "run"
    job = {"space": SPACE, "preset": PRESET, "dataset": DATASET, "training": TRAINING}
    job_file = root / "job.yaml"
    job_file.write_text(yaml.safe_dump({**job, "output_dir": str(run_dir), "finetune": TINY}))
    train_local(TrainJob.model_validate({**job, "output_dir": run_dir}), data_root=root / "data")
    return Trained(root, job_file, run_dir)


def _subnets(trained: Trained, count: int, seed: int) -> list[SubnetResult]:
    """``count`` sampled subnets with their val accuracy measured from the supernet."""
    loaded = trained.files(trained.run_dir).load()
    space = search_spaces.get(SPACE, preset=PRESET)
    archs: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    while len(archs) < count:
        arch = space.sample(rng)
        archs.setdefault(arch.id, arch)
    measured = loaded.measure_val(
        [loaded.space.arch_from_dict(a.to_dict()) for a in archs.values()]
    )
    return [
        SubnetResult(
            arch_id=arch.id,
            arch=arch.to_dict(),
            resolution=arch.resolution,
            macs=space.complexity(arch).macs,
            params=space.complexity(arch).params,
            measured_accuracy=float(accuracy),
        )
        for arch, accuracy in zip(archs.values(), measured, strict=True)
    ]


def _job(sessions: sessionmaker[Session], results: JobResults, state: str = "succeeded") -> int:
    """A finished job row (``state``: succeeded or failed) with ``results`` stored as the
    searching stage's are."""
    spec = JobCreate.model_validate(
        {
            "name": "fine-tuned on request",
            "space": SPACE,
            "dataset": DATASET,
            "training": TRAINING,
            "finetune": TINY,
        }
    ).model_dump(mode="json")
    with sessions() as session:
        job = Job(
            name="on request",
            owner="local",
            space=SPACE,
            preset=PRESET,
            spec=spec,
            state=state,
            stage="exporting",
            progress=100.0,
            finished_at=datetime.now(UTC),
        )
        session.add(job)
        session.flush()
        ingest_results(session, job.id, results)
        session.commit()
        return job.id


def _ids(sessions: sessionmaker[Session], job_id: int) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(Subnet.arch_id, Subnet.id).where(Subnet.job_id == job_id))
        return {arch_id: subnet_id for arch_id, subnet_id in rows}


@pytest.fixture(scope="module")
def service(trained: Trained, ray_local: Any) -> Iterator[Service]:
    root = trained.root
    settings = _settings(f"sqlite:///{root / 'var' / 'nas.db'}", root)
    upgrade_database(settings.database_url)
    engine = create_db_engine(settings.database_url)
    sessions = create_session_factory(engine)
    results = JobResults(subnets=_subnets(trained, len(ROLES), seed=3), fronts=[])
    job_id = _job(sessions, results)
    directory = job_dir(settings.artifact_dir, job_id)
    (directory / "supernet").mkdir(parents=True)
    shutil.copy(trained.run_dir / "latest.pt", directory / "supernet" / "latest.pt")
    (directory / RESULTS_NAME).write_text(results.model_dump_json())
    ids = _ids(sessions, job_id)
    subnets = {role: ids[s.arch_id] for role, s in zip(ROLES, results.subnets, strict=True)}
    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
        serving(settings) as url,
    ):
        yield Service(settings, sessions, client, url, job_id, subnets, results)
    engine.dispose()


def _finished(client: TestClient, subnet_id: int, seen: list[float]) -> dict[str, Any] | None:
    status = client.get(f"{API}/subnets/{subnet_id}/finetune").json()
    seen.append(status["progress"])
    return None if status["state"] in ("queued", "running") else status


# --- REST ----------------------------------------------------------------------------------------


def test_a_requested_finetune_runs_and_is_recorded_as_the_stage_records_it(
    service: Service, trained: Trained
) -> None:
    client, subnet_id, subnet = service.client, service.subnets["tuned"], service.subnet("tuned")
    url = f"{API}/subnets/{subnet_id}/finetune"
    assert client.get(url).json()["state"] == "not_requested"

    asked = client.post(url, headers=AUTH)  # no body: the job's own settings
    assert asked.status_code == 202, asked.text
    assert asked.json()["state"] in ("queued", "running")
    assert asked.json()["settings"] == FinetuneSettings(**TINY).model_dump()  # the job's own
    seen: list[float] = []
    status = wait_until("the fine-tuning", lambda: _finished(client, subnet_id, seen), 240)
    assert status["state"] == "succeeded", status
    assert all(0.0 <= p <= 1.0 for p in seen) and status["progress"] == 1.0
    assert status["requested_at"] <= status["started_at"] <= status["finished_at"]
    assert status["measured_on"] == "val"
    assert status["inherited_accuracy"] == subnet.measured_accuracy
    assert status["finetune"]["trials"] == 1 and status["finetune"]["epochs"] == 1
    assert status["download_url"] == f"{API}/subnets/{subnet_id}/download?format=finetuned"

    # the files: the record, and results.json saying the same
    record = FinetunedResult.model_validate_json(
        record_path(service.job_dir, subnet.arch_id).read_bytes()
    )
    assert record.accuracy == status["finetuned_accuracy"]
    assert read_results(service.job_dir / RESULTS_NAME).subnet(subnet.arch_id).finetuned == record
    # the rows: the subnet's figures as the stage's ingestion writes them, the weights' artifact
    row = service.row("tuned")
    assert row.finetuned_accuracy == record.accuracy
    assert row.finetune == record.model_dump(mode="json", exclude={"accuracy"})
    listed = client.get(f"{API}/jobs/{service.job_id}/subnets").json()["data"]
    assert {s["arch_id"]: s["finetuned_accuracy"] for s in listed}[subnet.arch_id] == (
        record.accuracy
    )
    download = client.get(status["download_url"])
    assert download.status_code == 200
    weights = weights_path(service.job_dir, subnet.arch_id)
    assert download.content == weights.read_bytes()
    state = torch.load(io.BytesIO(download.content), map_location="cpu", weights_only=True)
    loaded = trained.files(service.job_dir).load()
    loaded.extract(loaded.space.arch_from_dict(subnet.arch)).load_state_dict(state)  # strict

    # asked again (other settings or none): the record answers, nothing runs
    trials = sorted(experiment_path(service.job_dir, subnet.arch_id).iterdir())
    again = client.post(url, json={"samples": 3}, headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "succeeded"
    assert again.json()["finetuned_accuracy"] == record.accuracy
    assert sorted(experiment_path(service.job_dir, subnet.arch_id).iterdir()) == trials
    with service.sessions() as session:
        kinds = session.scalars(select(Artifact.kind).where(Artifact.subnet_id == subnet_id))
        assert list(kinds) == ["finetuned_weights"]

    # `nas finetune SUBNET_ID` through the service: both figures, at once
    env = {"NAS_URL": service.url, "NAS_TOKEN": TOKEN, "COLUMNS": "200"}
    shown = runner.invoke(cli_app, ["finetune", str(subnet_id)], env=env)
    assert shown.exit_code == 0, shown.output
    found = INHERITED_TO_TUNED.search(shown.output)
    assert found is not None, shown.output
    assert found.groups() == (f"{subnet.measured_accuracy:.2f}", f"{record.accuracy:.2f}")
    assert f"nas download {subnet_id} --format finetuned" in shown.output


def test_a_running_finetune_is_cancelled_and_leaves_no_record(service: Service) -> None:
    """Through ``nas.client`` on the served app: a recipe of up to 30 epochs (seeded: it
    runs more than one), cancelled once its trial reported an epoch."""
    subnet_id, arch_id = service.subnets["cancelled"], service.subnet("cancelled").arch_id
    stops: list[httpx.Response] = []

    def cancel_once_running(status: dict[str, Any]) -> None:
        if status["state"] == "running" and status["progress"] > 0 and not stops:
            assert status["progress"] < 1.0
            stops.append(
                httpx.delete(f"{service.url}{API}/subnets/{subnet_id}/finetune", headers=AUTH)
            )

    with Client(service.url, TOKEN) as nas:
        asked = nas.finetune(subnet_id, samples=1, max_epochs=30, grace_epochs=30)
        assert asked["state"] in ("queued", "running")
        longer = {"samples": 1, "max_epochs": 30, "grace_epochs": 30}
        assert asked["settings"] == FinetuneSettings(**{**TINY, **longer}).model_dump()
        final = nas.wait_finetune(
            subnet_id, poll_s=0.2, on_state=cancel_once_running, timeout_s=240
        )
        (stop,) = stops
        assert stop.status_code == 202, stop.text
        assert stop.json()["cancel_requested"] and stop.json()["state"] == "running"
        assert final["state"] == "cancelled" and final["cancel_requested"], final
        assert nas.finetune_status(subnet_id)["state"] == "cancelled"
        with pytest.raises(ClientError) as none_left:
            nas.cancel_finetune(subnet_id)
        assert none_left.value.status == 409

    assert not weights_path(service.job_dir, arch_id).exists()
    assert not record_path(service.job_dir, arch_id).exists()
    assert not experiment_path(service.job_dir, arch_id).exists()
    assert service.row("cancelled").finetuned_accuracy is None
    assert read_results(service.job_dir / RESULTS_NAME).subnet(arch_id).finetuned is None
    untuned = service.client.get(f"{API}/subnets/{subnet_id}/download?format=finetuned")
    assert untuned.status_code == 409


def test_requests_the_service_refuses_say_why(service: Service) -> None:
    client, spare = service.client, service.subnets["spare"]
    url = f"{API}/subnets/{spare}/finetune"
    bad = {
        "samples": {"samples": 0},
        "max_epochs": {"max_epochs": 1001},
        "grace_epochs": {"max_epochs": 2, "grace_epochs": 3},
        "distill": {"distill": 1},
        "seed": {"seed": "1"},
        "subnets": {"subnets": 2},  # the job's setting; one subnet is fine-tuned here
    }
    problems = {
        field: problem
        for field, body in bad.items()
        if (problem := _field_errors(client.post(url, json=body, headers=AUTH), 422, field))
    }
    assert problems == {}
    # beyond the schema: grace_epochs alone over the job's own max_epochs (1)
    over = client.post(url, json={"grace_epochs": 2}, headers=AUTH)
    assert _field_errors(over, 422, "grace_epochs") is None
    assert "more than max_epochs 1" in over.json()["message"]

    for method in ("POST", "GET", "DELETE"):
        unknown = client.request(method, f"{API}/subnets/987654/finetune", headers=AUTH)
        assert unknown.status_code == 404 and "987654" in unknown.json()["detail"]
    assert client.post(url, json={}).status_code == 401
    assert client.delete(url).status_code == 401
    nothing = client.delete(url, headers=AUTH)
    assert nothing.status_code == 409 and "no fine-tuning" in nothing.json()["detail"]

    # a job that did not succeed, then one whose supernet is not on disk
    results = JobResults(subnets=[service.subnet("spare")], fronts=[])
    other = _job(service.sessions, results, "failed")
    (subnet_id,) = _ids(service.sessions, other).values()
    failed = client.post(f"{API}/subnets/{subnet_id}/finetune", json={}, headers=AUTH)
    assert failed.status_code == 409 and "is failed" in failed.json()["detail"]
    with service.sessions() as session:
        session.get_one(Job, other).state = "succeeded"
        session.commit()
    gone = client.post(f"{API}/subnets/{subnet_id}/finetune", json={}, headers=AUTH)
    assert gone.status_code == 409 and "supernet is not on disk" in gone.json()["detail"]

    # a full queue: 503 with Retry-After, nothing queued
    app = client.app
    running = app.state.finetunes  # type: ignore[attr-defined]
    full_queue = FinetuneQueue(service.settings, service.sessions, max_pending=0)
    app.state.finetunes = full_queue  # type: ignore[attr-defined]
    try:
        full = client.post(url, json={}, headers=AUTH)
    finally:
        app.state.finetunes = running  # type: ignore[attr-defined]
    assert full.status_code == 503 and full.headers["retry-after"] == "60"
    assert client.get(url).json()["state"] == "not_requested"


def test_the_queue_is_bounded_coalesces_and_cancels_waiting_tasks(service: Service) -> None:
    """Tasks wait while the worker's first session is held back; the job has no supernet on
    disk, so each that runs fails saying so (no Ray here)."""
    results = JobResults(subnets=service.results.subnets, fronts=[])
    untrained = _job(service.sessions, results)
    first, second, third = _ids(service.sessions, untrained).values()
    gate = threading.Event()

    def sessions() -> Session:
        gate.wait(30)
        return service.sessions()

    finetunes = FinetuneQueue(service.settings, sessions, max_pending=2)
    settings = FinetuneSettings(**TINY)
    a, b = finetunes.request(first, settings), finetunes.request(second, settings)
    assert finetunes.request(first, settings.changed(samples=5)) is a  # coalesced
    assert a.settings == settings
    with pytest.raises(QueueFullError):
        finetunes.request(third, settings)
    assert finetunes.position(b) == 1
    assert finetunes.cancel(second) is b and b.state == "cancelled"  # at once: it waited
    c = finetunes.request(third, settings)  # its place is free
    gate.set()
    wait_until("both to fail", lambda: a.state == c.state == "failed", 30)
    assert all("supernet is not on disk" in (t.error or "") for t in (a, c)), (a, c)
    assert b.state == "cancelled" and b.started_at is None  # it never ran
    assert finetunes.cancel(first) is None  # nothing queued or running
    finetunes.close()


def test_a_relayed_callback_pickles_and_reaches_the_live_one_by_its_key() -> None:
    """What Ray Tune does with ``on_epoch`` and ``should_stop``: pickles them with the
    experiment, and a restored experiment unpickles them in a later call."""
    seen: list[tuple[int, ...]] = []
    lock = threading.Lock()  # what no pickle takes

    def report(*args: int) -> None:
        with lock:
            seen.append(args)

    with relayed(report, "experiment:on_epoch") as relay:
        copy = pickle.loads(pickle.dumps(relay))
        copy(1, 4)
        with pytest.raises(ValueError, match="relayed already"), relayed(report, relay.key):
            pass
    assert copy(2, 4) is None and seen == [(1, 4)]  # nothing registered: the default
    with relayed(report, "experiment:on_epoch"):  # the call that restored the experiment
        copy(3, 4)
    assert seen == [(1, 4), (3, 4)]


# --- exports of a fine-tuned subnet: either weights --------------------------------------------


def _finetuned(service: Service, role: str) -> dict[str, Any]:
    """The role's subnet fine-tuned on request (answered at once where that was done)."""
    client, subnet_id = service.client, service.subnets[role]
    asked = client.post(f"{API}/subnets/{subnet_id}/finetune", headers=AUTH)
    assert asked.status_code in (200, 202), asked.text
    status = wait_until("the fine-tuning", lambda: _finished(client, subnet_id, []), 240)
    assert status["state"] == "succeeded", status
    return status


def _onnx_run(content: bytes) -> tuple[np.ndarray, str]:
    """The file's logits on a fixed input of its shape, and the weights its manifest names."""
    manifest = json.loads(
        {p.key: p.value for p in onnx.load_from_string(content).metadata_props}["nas.manifest"]
    )
    shape = (2, manifest["in_channels"], manifest["resolution"], manifest["resolution"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0], manifest["metadata"]["weights"]


def _artifacts(service: Service, subnet_id: int) -> dict[str, tuple[str, str]]:
    detail = service.client.get(f"{API}/subnets/{subnet_id}").json()
    return {a["kind"]: (a["format"], a["weights"]) for a in detail["artifacts"]}


def test_a_finetuned_subnet_exports_with_either_weights(service: Service, tmp_path: Path) -> None:
    """Through ``nas.client`` on the served app: the default export has the fine-tuned
    weights, ``weights=inherited`` the supernet's, each in its own file and kind."""
    _finetuned(service, "tuned")
    subnet_id, arch_id = service.subnets["tuned"], service.subnet("tuned").arch_id
    with Client(service.url, TOKEN) as nas:
        tuned = nas.export(subnet_id, "onnx", poll_s=0.2)
        inherited = nas.export(subnet_id, "onnx", weights="inherited", poll_s=0.2)
        assert nas.download(subnet_id, "onnx", tmp_path, weights="finetuned").name == (
            f"subnet-{subnet_id}.onnx"
        )
    assert (tuned["weights"], inherited["weights"]) == ("finetuned", "inherited")
    assert tuned["sha256"] != inherited["sha256"]
    assert inherited["download_url"].endswith("format=onnx&weights=inherited")
    exports = service.job_dir / "exports" / arch_id
    assert hashlib.sha256((exports / "subnet.onnx").read_bytes()).hexdigest() == tuned["sha256"]
    on_disk = (exports / "inherited" / "subnet.onnx").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == inherited["sha256"]

    client, url = service.client, f"{API}/subnets/{subnet_id}"
    default = client.get(f"{url}/download", params={"format": "onnx"})
    assert default.headers["x-checksum-sha256"] == tuned["sha256"]
    old = client.get(inherited["download_url"])
    assert old.headers["x-checksum-sha256"] == inherited["sha256"]
    assert f"subnet-{subnet_id}.inherited.onnx" in old.headers["content-disposition"]
    tuned_logits, tuned_says = _onnx_run(default.content)
    inherited_logits, inherited_says = _onnx_run(old.content)
    assert (tuned_says, inherited_says) == ("finetuned", "inherited")
    assert np.abs(tuned_logits - inherited_logits).max() > 1e-3
    assert _artifacts(service, subnet_id) == {
        "finetuned_weights": ("finetuned", "finetuned"),
        "onnx": ("onnx", "finetuned"),
        "onnx_inherited": ("onnx", "inherited"),
    }

    # `nas download --weights inherited`: the inherited file, under its own name
    env = {"NAS_URL": service.url, "NAS_TOKEN": TOKEN, "COLUMNS": "200"}
    args = ["download", str(subnet_id), "--weights", "inherited", "--out", str(tmp_path)]
    shown = runner.invoke(cli_app, args, env=env)
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / f"subnet-{subnet_id}.inherited.onnx").read_bytes() == on_disk


def test_finetuned_weights_of_a_subnet_never_finetuned_are_a_409(service: Service) -> None:
    client, subnet_id = service.client, service.subnets["cancelled"]
    url = f"{API}/subnets/{subnet_id}"
    assert service.row("cancelled").finetune is None
    own = client.get(f"{url}/exports/onnx").json()
    assert (own["weights"], own["state"]) == ("inherited", "not_requested")
    refused = {
        "export": client.post(
            f"{url}/exports", json={"format": "onnx", "weights": "finetuned"}, headers=AUTH
        ),
        "read": client.get(f"{url}/exports/torchscript", params={"weights": "finetuned"}),
        "download": client.get(f"{url}/download", params={"weights": "finetuned"}),
    }
    for name, response in refused.items():
        assert response.status_code == 409, (name, response.text)
        detail = response.json()["detail"]
        assert detail.startswith("weights: ") and f"POST {url}/finetune" in detail, name
    untuned_file = client.get(
        f"{url}/download", params={"format": "finetuned", "weights": "inherited"}
    )
    assert untuned_file.status_code == 409 and "weights=inherited goes with" in untuned_file.text
    bad = client.post(f"{url}/exports", json={"weights": "supernet"}, headers=AUTH)
    assert _field_errors(bad, 422, "weights") is None
    with Client(service.url, TOKEN) as nas:
        with pytest.raises(ClientError) as refused_here:
            nas.export(subnet_id, "onnx", weights="finetuned")
        assert refused_here.value.status == 409
        with pytest.raises(ValueError, match="weights: 'supernet'"):
            nas.download(subnet_id, "onnx", weights="supernet")
    assert client.get(f"{url}/exports/onnx").json()["state"] == "not_requested"  # none queued


def test_an_export_made_before_an_on_request_finetuning_is_then_the_inherited_one(
    service: Service,
) -> None:
    client, subnet_id = service.client, service.subnets["spare"]
    arch_id = service.subnet("spare").arch_id
    exports = service.job_dir / "exports" / arch_id
    with Client(service.url, TOKEN) as nas:
        before = nas.export(subnet_id, "onnx", poll_s=0.2)
        assert before["weights"] == "inherited"
        with service.sessions() as session:
            (row,) = session.scalars(select(Artifact).where(Artifact.subnet_id == subnet_id))
            made = (row.id, row.sha256, row.size_bytes)
        assert (exports / "subnet.onnx").is_file()

        _finetuned(service, "spare")
        # the file and its row: moved, kind and path changed, the same bytes
        assert not (exports / "subnet.onnx").exists()
        assert (exports / "inherited" / "subnet.onnx").is_file()
        with service.sessions() as session:
            moved = session.get_one(Artifact, made[0])
            assert (moved.id, moved.sha256, moved.size_bytes) == made
            assert moved.kind == "onnx_inherited"
            assert moved.path.endswith(f"exports/{arch_id}/inherited/subnet.onnx")
        assert _artifacts(service, subnet_id)["onnx_inherited"] == ("onnx", "inherited")
        old = client.get(f"{API}/subnets/{subnet_id}/exports/onnx?weights=inherited").json()
        assert (old["state"], old["sha256"]) == ("ready", before["sha256"])
        # the default is the fine-tuned weights now: no file until it is made anew
        stale = client.get(f"{API}/subnets/{subnet_id}/download", params={"format": "onnx"})
        assert stale.status_code == 409 and "finetuned weights" in stale.json()["detail"]

        after = nas.export(subnet_id, "onnx", poll_s=0.2)
    assert after["weights"] == "finetuned" and after["sha256"] != before["sha256"]
    fresh = client.get(after["download_url"])
    assert fresh.headers["x-checksum-sha256"] == after["sha256"]
    assert _onnx_run(fresh.content)[1] == "finetuned"
    inherited = client.get(old["download_url"])
    assert hashlib.sha256(inherited.content).hexdigest() == before["sha256"]
    assert _onnx_run(inherited.content)[1] == "inherited"


# --- nas finetune --job-dir: here, without the service -----------------------------------------


def test_nas_finetune_with_a_job_dir_runs_here(trained: Trained, service: Service) -> None:
    space = search_spaces.get(SPACE, preset=PRESET)
    taken = {s.arch_id for s in service.results.subnets}
    samples = (space.sample(np.random.default_rng(seed)) for seed in range(9))
    arch = next(a for a in samples if a.id not in taken)
    arch_file = trained.root / "arch.json"
    arch_file.write_text(json.dumps(arch.to_dict()))
    local = [
        "finetune", "--job-dir", str(trained.run_dir), "--arch", str(arch_file),
        str(trained.job_file), "--data-root", str(trained.data_root),
    ]  # fmt: skip
    result = runner.invoke(cli_app, local, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    found = INHERITED_TO_TUNED.search(result.output)
    assert found is not None, result.output
    loaded = trained.files(trained.run_dir).load()
    inherited = loaded.measure_val([loaded.space.arch_from_dict(arch.to_dict())])[0]
    record = FinetunedResult.model_validate_json(record_path(trained.run_dir, arch.id).read_bytes())
    assert found.groups() == (f"{inherited:.2f}", f"{record.accuracy:.2f}")
    assert record.trials == TINY["samples"]  # the YAML's own settings
    assert str(weights_path(trained.run_dir, arch.id)) in result.output.replace("\n", "")

    # a service job's directory, the arch by its id in results.json: done on request already
    tuned = service.subnet("tuned")
    by_id = [
        "finetune", "--job-dir", str(service.job_dir), "--arch", tuned.arch_id,
        str(trained.job_file), "--data-root", str(trained.data_root),
    ]  # fmt: skip
    again = runner.invoke(cli_app, by_id, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "fine-tuned by an earlier attempt" in again.output
    found = INHERITED_TO_TUNED.search(again.output)
    assert found is not None and found.group(2) == f"{service.row('tuned').finetuned_accuracy:.2f}"


def test_nas_finetune_refuses_in_one_line(trained: Trained, tmp_path: Path) -> None:
    run, job_file = str(trained.run_dir), str(trained.job_file)
    cases = {
        "neither": ([], "give a SUBNET_ID"),
        "both": (["7", "--job-dir", run, "--arch", "a"], "not both"),
        "no id": (["job.yaml"], "'job.yaml' is not a subnet id"),
        "no yaml": (["--job-dir", run, "--arch", "a"], "--job-dir needs the job YAML"),
        "no arch": (["--job-dir", run, job_file], "--job-dir needs --arch"),
        "arch here only": (["7", "--arch", "a"], "go with --job-dir"),
        "unknown arch": (["--job-dir", run, "--arch", "nope", job_file], "'nope' is neither"),
        "untrained": (["--job-dir", str(tmp_path), "--arch", "a", job_file], "no trained"),
        "bad setting": (["--job-dir", run, "--arch", "a", job_file, "--samples", "0"], "samples"),
    }
    env = {"NAS_URL": "http://127.0.0.1:9", "COLUMNS": "500"}
    failures = {}
    for name, (args, expected) in cases.items():
        result = runner.invoke(cli_app, ["finetune", *args], env=env)
        lines = result.output.splitlines()
        if result.exit_code != 2 or len(lines) != 1 or expected not in result.output:
            failures[name] = (result.exit_code, result.output)
    assert failures == {}
