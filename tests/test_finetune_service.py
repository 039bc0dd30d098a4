"""The finetuning stage as the service sees it (issue 29), on SQLite and PostgreSQL: the
``finetune`` field of a job spec (default, custom, null, refused), the stage's events recorded
through the controller's own path (``record_events``: the state, the stage row, the fine-tuned
weights, results.json re-ingested with ``finetuned`` set), the REST answers with both accuracies
labelled and the weights downloadable, migration 0004 from a database at 0003 with a job in
the middle of its search, and ``nas pareto`` printing both figures.

Results files and weights are written here as the stages leave them (no training: the figures
are made up); everything else is the service's real code on a real database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _serving import serving
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, create_engine, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from test_api_jobs import AUTH, SPEC, TOKEN, _field_errors, _settings
from typer.testing import CliRunner

from service.api.schemas.jobs import JobCreate
from service.app import create_app
from service.cli import app as cli_app
from service.db import create_db_engine, create_session_factory
from service.dispatcher import job_request
from service.migrate import alembic_config, upgrade_database
from service.models import Artifact, Job, JobStage, Subnet
from service.settings import Settings
from service.store.leases import OwnedJob
from service.store.progress import record_events
from service.store.results import ingest_results
from workers.events import (
    ArtifactWritten,
    ResultsWritten,
    RunnerEvent,
    StageFinished,
    StageStarted,
)
from workers.results import (
    RESULTS_NAME,
    FinetunedResult,
    FrontResult,
    JobResults,
    LatencyResult,
    SubnetResult,
    write_results,
)
from workers.spec import FinetuneSettings, job_dir
from workers.trained import checkpoint_path

API = "/api/v1"
DEVICE = "host-cpu-onnxruntime"
OWNER = "controller-test"
BUDGET_MS = 1.0
#: arch_id -> (inherited val accuracy, latency ms); a, b, c make the front within the budget
#: (a the best), d is over it.
SUBNETS = {"a": (95.1, 0.9), "b": (92.0, 0.6), "c": (88.5, 0.3), "d": (96.0, 1.4)}
#: What the finetuning stage measured on val for the subnets it trained.
TUNED = {"a": 96.4, "b": 93.25}


def _subnet(arch_id: str, finetuned: FinetunedResult | None = None) -> SubnetResult:
    accuracy, ms = SUBNETS[arch_id]
    depth = {"a": 4, "b": 3, "c": 2, "d": 5}[arch_id]
    return SubnetResult(
        arch_id=arch_id,
        arch={"space": "bignas", "preset": "tiny", "resolution": 32, "depth": [depth, 2]},
        resolution=32,
        macs=1_000_000 * depth,
        params=100_000 * depth,
        predicted_accuracy=accuracy + 0.5,
        measured_accuracy=accuracy,
        latencies={DEVICE: LatencyResult(predicted_ms=ms * 0.95, measured_ms=ms)},
        finetuned=finetuned,
    )


def _finetuned(arch_id: str, accuracy: float) -> FinetunedResult:
    return FinetunedResult(
        accuracy=accuracy,
        holdout_accuracy=accuracy - 0.7,
        recipe={
            "lr": 0.004,
            "weight_decay": 3e-5,
            "epochs": 2,
            "label_smoothing": 0.1,
            "kd_weight": 0.5,
        },
        epochs=2,
        trials=2,
        stopped_early=1,
        weights=f"finetuned/{arch_id}.pt",
    )


def _results(tuned: dict[str, float] | None = None) -> JobResults:
    """The job's results as the searching stage writes them, or (``tuned``) as the finetuning
    stage rewrites them, ``finetuned`` set on the subnets it trained."""
    tuned = tuned or {}
    subnets = [_subnet(a, _finetuned(a, tuned[a]) if a in tuned else None) for a in sorted(SUBNETS)]
    front = FrontResult(
        device=DEVICE,
        objectives=["accuracy", f"latency:{DEVICE}"],
        hypervolume=0.42,
        budget={"latency_ms": BUDGET_MS},
        members=["a", "b", "c"],
        best="a",
    )
    return JobResults(subnets=subnets, fronts=[front])


def _spec() -> dict[str, Any]:
    return JobCreate.model_validate(
        {
            "name": "fine-tuned",
            "space": "bignas",
            "dataset": {"kind": "digits"},
            "search": {"budgets": {DEVICE: {"latency_ms": BUDGET_MS}}},
            "devices": [DEVICE],
        }
    ).model_dump(mode="json")


@dataclass
class Stages:
    """Drives a job's stages through the controller's recording path, as its runner reports."""

    sessions: sessionmaker[Session]
    artifact_dir: Path
    job_id: int
    seq: int = 0

    def record(self, *events: Any) -> None:
        numbered: list[RunnerEvent] = []
        for event in events:
            self.seq += 1
            numbered.append(event(self.seq))
        with self.sessions() as session:
            recorded = record_events(
                session, self.job_id, OWNER, 1, numbered, artifact_dir=self.artifact_dir
            )
        assert recorded == self.seq

    def write_results(self, results: JobResults) -> str:
        path = job_dir(self.artifact_dir, self.job_id) / RESULTS_NAME
        write_results(results, path)
        return path.relative_to(self.artifact_dir).as_posix()

    def search(self) -> None:
        path = self.write_results(_results())
        at = datetime.now(UTC)
        self.record(
            lambda n: StageStarted(seq=n, at=at, stage="searching"),
            lambda n: ResultsWritten(seq=n, at=at, stage="searching", path=path),
            lambda n: StageFinished(seq=n, at=at, stage="searching"),
        )

    def start_finetuning(self) -> None:
        at = datetime.now(UTC)
        self.record(lambda n: StageStarted(seq=n, at=at, stage="finetuning"))

    def finish_finetuning(self, tuned: dict[str, float]) -> dict[str, bytes]:
        """The stage's files (a state dict per subnet) and its rewrite of results.json."""
        at = datetime.now(UTC)
        weights: dict[str, bytes] = {}
        events = []
        for arch_id in tuned:
            content = f"state dict of {arch_id}".encode() * 20
            relative = job_dir(self.artifact_dir, self.job_id) / "finetuned" / f"{arch_id}.pt"
            relative.parent.mkdir(parents=True, exist_ok=True)
            relative.write_bytes(content)
            weights[arch_id] = content
            events.append(
                lambda n, arch_id=arch_id, content=content, path=relative: ArtifactWritten(
                    seq=n,
                    at=at,
                    stage="finetuning",
                    kind="finetuned_weights",
                    path=path.relative_to(self.artifact_dir).as_posix(),
                    sha256=hashlib.sha256(content).hexdigest(),
                    size_bytes=len(content),
                    arch_id=arch_id,
                )
            )
        path = self.write_results(_results(tuned))
        self.record(
            *events,
            lambda n: ResultsWritten(seq=n, at=at, stage="finetuning", path=path),
            lambda n: StageFinished(seq=n, at=at, stage="finetuning"),
        )
        return weights


def _claimed_job(sessions: sessionmaker[Session], state: str = "training") -> int:
    """A job a controller (OWNER) runs, its first attempt."""
    now = datetime.now(UTC)
    with sessions() as session:
        job = Job(
            name="fine-tuned",
            owner="local",
            space="bignas",
            preset="tiny",
            spec=_spec(),
            state=state,
            stage=state,
            attempt=1,
            claimed_by=OWNER,
            heartbeat_at=now,
            started_at=now - timedelta(minutes=5),
        )
        session.add(job)
        session.commit()
        return job.id


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    return _settings(database_url, tmp_path)


@pytest.fixture
def stages(settings: Settings) -> Iterator[Stages]:
    engine = create_db_engine(settings.database_url)
    sessions = create_session_factory(engine)
    yield Stages(sessions, settings.artifact_dir, _claimed_job(sessions))
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _rows(stages: Stages) -> dict[str, Subnet]:
    with stages.sessions() as session:
        rows = session.scalars(select(Subnet).where(Subnet.job_id == stages.job_id)).all()
        return {row.arch_id: row for row in rows}


# --- recording the stage -------------------------------------------------------------------------


def test_the_stage_is_recorded_and_its_results_update_the_subnets(stages: Stages) -> None:
    stages.search()
    before = _rows(stages)
    assert all(row.finetuned_accuracy is None and row.finetune is None for row in before.values())

    stages.start_finetuning()
    with stages.sessions() as session:
        job = session.get_one(Job, stages.job_id)
        assert (job.state, job.stage) == ("finetuning", "finetuning")
    stages.finish_finetuning(TUNED)

    rows = _rows(stages)
    assert {a: r.finetuned_accuracy for a, r in rows.items()} == {**dict.fromkeys("cd"), **TUNED}
    for arch_id, row in rows.items():  # the inherited figure and the row itself stay
        assert row.id == before[arch_id].id
        assert row.measured_accuracy == SUBNETS[arch_id][0]
    assert rows["a"].finetune == {
        "holdout_accuracy": pytest.approx(TUNED["a"] - 0.7),
        "recipe": {
            "lr": 0.004,
            "weight_decay": 3e-5,
            "epochs": 2,
            "label_smoothing": 0.1,
            "kd_weight": 0.5,
        },
        "epochs": 2,
        "trials": 2,
        "stopped_early": 1,
        "weights": "finetuned/a.pt",
    }
    with stages.sessions() as session:
        stage = session.scalars(
            select(JobStage).where(JobStage.job_id == stages.job_id, JobStage.name == "finetuning")
        ).one()
        assert (stage.position, stage.state, stage.progress) == (3, "succeeded", 100.0)
        linked = session.execute(
            select(Artifact.kind, Subnet.arch_id).join(Subnet, Subnet.id == Artifact.subnet_id)
        ).all()
        assert sorted(linked) == [("finetuned_weights", "a"), ("finetuned_weights", "b")]

    # a resumed attempt fine-tunes again: its figures replace the first ones
    with stages.sessions() as session, session.begin():
        ingest_results(session, stages.job_id, _results({"a": 97.0}))
    assert _rows(stages)["a"].finetuned_accuracy == 97.0
    assert _rows(stages)["a"].finetune["holdout_accuracy"] == pytest.approx(96.3)  # type: ignore[index]
    # the searching stage's file read once more (a replayed event) forgets no fine-tuning
    with stages.sessions() as session, session.begin():
        ingest_results(session, stages.job_id, _results())
    assert {a: r.finetuned_accuracy for a, r in _rows(stages).items()} == {
        **dict.fromkeys("cd"),
        "a": 97.0,
        "b": TUNED["b"],
    }


def test_the_database_refuses_a_fine_tuned_accuracy_out_of_range(stages: Stages) -> None:
    stages.search()
    with stages.sessions() as session, pytest.raises(IntegrityError):
        session.execute(
            update(Subnet).where(Subnet.job_id == stages.job_id).values(finetuned_accuracy=100.5)
        )
        session.commit()


# --- REST --------------------------------------------------------------------------------------


def test_rest_shows_both_accuracies_labelled_and_serves_the_weights(
    stages: Stages, client: TestClient
) -> None:
    stages.search()
    searched = client.get(f"{API}/jobs/{stages.job_id}/fronts")
    assert [m["finetuned_accuracy"] for m in searched.json()["data"][0]["members"]] == [None] * 3
    stages.start_finetuning()
    weights = stages.finish_finetuning(TUNED)

    fronts = client.get(f"{API}/jobs/{stages.job_id}/fronts")
    assert fronts.headers["etag"] != searched.headers["etag"]  # the new figures are a new answer
    (front,) = fronts.json()["data"]
    members = {m["arch_id"]: m for m in front["members"]}
    assert list(members) == ["a", "b", "c"]  # the front stays on the inherited accuracy
    assert front["best_subnet_id"] == members["a"]["id"]
    for arch_id, member in members.items():
        assert member["measured_accuracy"] == SUBNETS[arch_id][0]
        assert member["finetuned_accuracy"] == TUNED.get(arch_id)
    assert members["a"]["finetune"] == {
        "holdout_accuracy": pytest.approx(95.7),
        "recipe": {
            "lr": 0.004,
            "weight_decay": 3e-5,
            "epochs": 2,
            "label_smoothing": 0.1,
            "kd_weight": 0.5,
        },
        "epochs": 2,
        "trials": 2,
        "stopped_early": 1,
    }
    assert members["c"]["finetune"] is None
    one = client.get(f"{API}/jobs/{stages.job_id}/fronts/{DEVICE}").json()
    assert one == front

    listed = client.get(f"{API}/jobs/{stages.job_id}/subnets", params={"sort": "macs"}).json()
    assert [(s["arch_id"], s["finetuned_accuracy"]) for s in listed["data"]] == [
        ("c", None),
        ("b", TUNED["b"]),
        ("a", TUNED["a"]),
        ("d", None),
    ]

    # the weights: listed with the subnet's files, downloaded where the exports are
    detail = client.get(f"{API}/subnets/{members['b']['id']}").json()
    assert detail["finetuned_accuracy"] == TUNED["b"]
    (artifact,) = detail["artifacts"]
    assert (artifact["kind"], artifact["format"]) == ("finetuned_weights", "finetuned")
    download = client.get(f"{API}/subnets/{members['b']['id']}/download?format=finetuned")
    assert download.status_code == 200 and download.content == weights["b"]
    assert download.headers["x-checksum-sha256"] == hashlib.sha256(weights["b"]).hexdigest()
    assert download.headers["content-type"] == "application/octet-stream"
    assert f"subnet-{members['b']['id']}.finetuned.pt" in download.headers["content-disposition"]
    untuned = client.get(f"{API}/subnets/{members['c']['id']}/download?format=finetuned")
    assert untuned.status_code == 409 and "was not fine-tuned" in untuned.json()["detail"]
    # only exports are made on request: "finetuned" is no export format
    refused = client.post(
        f"{API}/subnets/{members['c']['id']}/exports", json={"format": "finetuned"}, headers=AUTH
    )
    assert _field_errors(refused, 422, "format") is None

    # a fine-tuned subnet is exported with its fine-tuned weights, so not without them
    with stages.sessions() as session:
        session.execute(
            update(Job)
            .where(Job.id == stages.job_id)
            .values(state="succeeded", finished_at=datetime.now(UTC))
        )
        session.commit()
    directory = job_dir(stages.artifact_dir, stages.job_id)
    checkpoint_path(directory).parent.mkdir(parents=True, exist_ok=True)
    checkpoint_path(directory).write_bytes(b"a supernet")  # only its presence is checked first
    (directory / "finetuned" / "b.pt").unlink()
    gone = client.post(
        f"{API}/subnets/{members['b']['id']}/exports", json={"format": "onnx"}, headers=AUTH
    )
    assert (
        gone.status_code == 409
        and "fine-tuned weights (finetuned/b.pt) are not on disk" in (gone.json()["detail"])
    )

    # the labels: the schema says which figure is measured and which predicted
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["SubnetPublic"]["properties"]
    assert fields["finetuned_accuracy"]["description"].startswith("Measured: top-1 on val")
    assert fields["measured_accuracy"]["description"].startswith("Measured:")
    assert fields["predicted_accuracy"]["description"].startswith("Predicted:")
    holdout = schemas["FinetunePublic"]["properties"]["holdout_accuracy"]["description"]
    assert holdout.startswith("Measured on the holdout split")


# --- the job spec ------------------------------------------------------------------------------


def test_finetune_in_a_submitted_spec(client: TestClient, settings: Settings) -> None:
    default = client.post(f"{API}/jobs", json=SPEC, headers=AUTH)
    assert default.status_code == 201, default.text
    assert default.json()["spec"]["finetune"] == FinetuneSettings().model_dump()

    chosen: dict[str, Any] = {
        "subnets": 2,
        "samples": 4,
        "max_epochs": 3,
        "grace_epochs": 1,
        "distill": False,
    }
    custom = client.post(f"{API}/jobs", json={**SPEC, "finetune": chosen}, headers=AUTH).json()
    assert client.get(f"{API}/jobs/{custom['id']}").json()["spec"]["finetune"] == {
        **chosen,
        "seed": 0,
    }

    off = client.post(f"{API}/jobs", json={**SPEC, "finetune": None}, headers=AUTH)
    assert off.status_code == 201, off.text
    stored = client.get(f"{API}/jobs/{off.json()['id']}").json()
    assert "finetune" in stored["spec"] and stored["spec"]["finetune"] is None

    bad = {
        "finetune.grace_epochs": {"max_epochs": 2, "grace_epochs": 3},
        "finetune.subnets": {"subnets": 0},
        "finetune.samples": {"samples": "4"},
        "finetune.distill": {"distill": 1},
        "finetune.warmup": {"warmup": 1},
        "finetune": "yes",
    }
    problems = {}
    for field, value in bad.items():
        response = client.post(f"{API}/jobs", json={**SPEC, "finetune": value}, headers=AUTH)
        problem = _field_errors(response, 422, field)
        if problem:
            problems[field] = problem
    assert problems == {}
    message = client.post(
        f"{API}/jobs", json={**SPEC, "finetune": bad["finetune.grace_epochs"]}, headers=AUTH
    ).json()["message"]
    assert message.startswith("finetune.grace_epochs: 3 is more than max_epochs 2")

    # what the dispatcher hands the runner: null skips the stage, an older spec gets defaults
    def request(spec: dict[str, Any]) -> Any:
        owned = OwnedJob(
            id=7,
            attempt=1,
            spec=spec,
            completed_stages=[],
            event_seq=0,
            ray_actor="nas-job-7-1",
            cancel_requested=False,
        )
        return job_request(owned, settings).finetune

    assert request(stored["spec"]) is None
    assert request(custom["spec"]) == FinetuneSettings(**chosen)
    older = {k: v for k, v in default.json()["spec"].items() if k != "finetune"}
    assert request(older) == FinetuneSettings()


# --- migration 0004 --------------------------------------------------------------------------


def test_upgrading_from_0003_mid_search_then_finetuning(database_url: str) -> None:
    """A database at 0003 holding a job in state searching (and a subnet the search measured)
    is upgraded; the job then enters the new stage. Downgrading again refuses while a job
    is in it, and afterwards keeps the rows the old schema knows."""
    upgrade_database(database_url, "0003")
    engine = create_engine(database_url)
    old = MetaData()
    jobs, job_stages, subnets = (
        Table(name, old, autoload_with=engine) for name in ("jobs", "job_stages", "subnets")
    )
    now = datetime(2026, 12, 1, 9)
    with engine.begin() as connection:
        job_id = connection.execute(
            insert(jobs).returning(jobs.c.id),
            {
                "name": "mid-search",
                "owner": "local",
                "space": "bignas",
                "preset": "tiny",
                "spec": _spec(),
                "state": "searching",
                "stage": "searching",
                "progress": 82.0,
                "attempt": 1,
                "event_seq": 12,
                "created_at": now,
                "updated_at": now,
                "started_at": now,
            },
        ).scalar_one()
        for position, name in enumerate(["training", "building_predictor", "searching"]):
            connection.execute(
                insert(job_stages),
                {
                    "job_id": job_id,
                    "name": name,
                    "position": position,
                    "state": "running" if name == "searching" else "succeeded",
                    "progress": 50.0,
                    "started_at": now,
                },
            )
        connection.execute(
            insert(subnets),
            {
                "job_id": job_id,
                "arch_id": "a",
                "arch": {"depth": [2]},
                "resolution": 32,
                "macs": 10,
                "params": 5,
                "measured_accuracy": 95.1,
                "created_at": now,
            },
        )
    engine.dispose()

    upgrade_database(database_url)
    engine = create_db_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        with sessions() as session:
            job = session.get_one(Job, job_id)
            assert (job.state, job.progress, job.event_seq) == ("searching", 82.0, 12)
            assert [s.name for s in job.stages] == ["training", "building_predictor", "searching"]
            subnet = session.scalars(select(Subnet).where(Subnet.job_id == job_id)).one()
            assert (subnet.measured_accuracy, subnet.finetuned_accuracy) == (95.1, None)
            job.state = job.stage = "finetuning"
            job.stages[-1].state = "succeeded"
            session.add(JobStage(job_id=job_id, name="finetuning", position=3))
            subnet.finetuned_accuracy = 96.4
            subnet.finetune = {"recipe": {"lr": 0.01}, "epochs": 1}
            session.commit()
        with sessions() as session:  # the old checks hold in the new tables
            session.add(JobStage(job_id=job_id, name="warming_up", position=9))
            with pytest.raises(IntegrityError):
                session.commit()
            session.rollback()
            with pytest.raises(IntegrityError):
                session.execute(update(Job).where(Job.id == job_id).values(state="paused"))
                session.commit()
            session.rollback()
        with sessions() as session:  # ids go on after the highest ever used
            newer = Job(name="n", owner="local", space="bignas", preset="tiny", spec={})
            session.add(newer)
            session.commit()
            assert newer.id == job_id + 1

        config = alembic_config(database_url)
        with pytest.raises(RuntimeError, match=rf"jobs \[{job_id}\] are in state 'finetuning'"):
            command.downgrade(config, "0003")
        with sessions() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state="exporting"))
            session.commit()
        command.downgrade(config, "0003")
        columns = {c["name"] for c in inspect(engine).get_columns("subnets")}
        assert "finetuned_accuracy" not in columns and "measured_accuracy" in columns
        with engine.connect() as connection:
            names = connection.execute(
                select(job_stages.c.name).where(job_stages.c.job_id == job_id)
            ).scalars()
            assert sorted(names) == ["building_predictor", "searching", "training"]
            assert connection.scalar(select(func.count()).select_from(subnets)) == 1
        upgrade_database(database_url)
    finally:
        engine.dispose()


# --- the command line ----------------------------------------------------------------------------


def test_nas_pareto_prints_both_figures_and_submit_takes_finetune(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'var' / 'nas.db'}"
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    settings = _settings(database_url, tmp_path)
    engine = create_db_engine(database_url)
    stages = Stages(create_session_factory(engine), settings.artifact_dir, 0)
    stages.job_id = _claimed_job(stages.sessions)
    stages.search()
    stages.start_finetuning()
    stages.finish_finetuning(TUNED)
    engine.dispose()
    off = tmp_path / "off.yaml"
    off.write_text("name: no fine-tuning\nspace: bignas\ndataset: {kind: digits}\nfinetune: null\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "name: too short\nspace: bignas\nfinetune:\n  max_epochs: 1\n  grace_epochs: 2\n"
    )
    runner = CliRunner()
    with serving(settings) as url:
        env = {"NAS_URL": url, "NAS_TOKEN": TOKEN, "COLUMNS": "200"}
        pareto = runner.invoke(cli_app, ["pareto", str(stages.job_id)], env=env)
        submitted = runner.invoke(cli_app, ["submit", str(off), "--json"], env=env)
        refused = runner.invoke(cli_app, ["submit", str(wrong)], env=env)
    assert pareto.exit_code == 0, pareto.output
    lines = pareto.output.splitlines()
    (best,) = [line for line in lines if "*" in line and "│" in line]
    assert "95.10 -> 96.40 (fine-tuned)" in best
    assert any("92.00 -> 93.25 (fine-tuned)" in line for line in lines)
    (plain,) = [line for line in lines if "│" in line and "88.50" in line]
    assert "fine-tuned" not in plain  # c was not fine-tuned
    summary = lines[lines.index(next(x for x in lines if x.startswith("  fine-tuned:"))) :]
    assert "95.10 -> 96.40 % on val, the best of 2 recipes" in summary[0]
    assert summary[1].startswith("  recipe: lr 0.004, weight_decay 3e-05, epochs 2")
    assert summary[2].endswith(f"subnets/{best.split('│')[2].strip()}/download?format=finetuned")
    assert submitted.exit_code == 0, submitted.output
    assert '"finetune": null' in submitted.output
    assert refused.exit_code != 0
    assert "finetune.grace_epochs" in refused.output and "HTTP 422" in refused.output
