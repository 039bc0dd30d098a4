"""Health gates: the checks as functions of figures, their settings as a submitted spec sees
them, their records in the job's log (once per gate, also when replayed), and whole jobs on a
real local Ray through the REST API and the `nas` CLI: a supernet at chance fails its job,
one that warns instead shows its warnings, and a healthy job shows none."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _jobs import wait_finished
from _serving import serving
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from nas.training import TrainingConfig
from service.api.schemas.jobs import JobCreate
from service.app import create_app
from service.cli import app as cli_app
from service.migrate import upgrade_database
from service.settings import Settings
from service.store import jobs, leases
from service.store.progress import record_events
from workers.events import Metrics
from workers.health import (
    HealthReport,
    check_predictor,
    check_training,
    reports_from_points,
    required_accuracy,
)
from workers.spec import HealthSettings, JobRequest

HOST = "host-cpu-torch"
SPACE = "bignas"
TRAINING: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 32,
    "sampler": "uniform",
    "warmup_epochs": 0,
    "bn_recalibration_batches": 2,
}
SPEC: dict[str, Any] = {
    "name": "health",
    "space": SPACE,
    "dataset": {"kind": "synthetic", "num_samples": 200, "resolution": 24},
    "training": TRAINING,
    "search": {"population": 8, "generations": 4, "evaluations": 10},
    "finetune": None,  # the gates end or mark a job before stage two
    "devices": [HOST],
}
#: A learning rate this small leaves the supernet at its random initialisation: at chance.
AT_CHANCE = {**SPEC, "training": {**TRAINING, "lr": 1e-6}}
DEFAULTS = HealthSettings()


# --- the checks ----------------------------------------------------------------------------------


def test_a_supernet_at_chance_fails_both_training_checks_with_advice() -> None:
    # the figures of issue 26: NASNet on digits, max subnet 14.48%, min 9.75%, chance 10%
    training = TrainingConfig(epochs=10, lr=0.2)
    report = check_training(
        max_accuracy=14.48, min_accuracy=9.75, num_classes=10, settings=DEFAULTS, training=training
    )
    assert [c.check for c in report.missed] == ["max_subnet_vs_chance", "min_subnet_vs_chance"]
    assert report.fatal and report.outcome == "failed"  # the default: fail the job
    largest = report.checks[0]
    assert (largest.value, largest.threshold, largest.bound) == (14.48, 20.0, "min")
    assert report.checks[1].threshold == 15.0
    error = report.error()
    for expected in (
        "14.48%",
        "9.75%",
        "20.00%",
        "chance",
        "training.epochs (now 10)",
        "training.lr (now 0.2)",
        "dataset",
        "health.on_training_failure: warn",
    ):
        assert expected in error, expected


def test_a_trained_supernet_passes_and_a_diverged_one_is_told_to_lower_the_lr() -> None:
    report = check_training(max_accuracy=60.4, min_accuracy=44.3, num_classes=10, settings=DEFAULTS)
    assert report.outcome == "passed" and all(c.advice is None for c in report.checks)
    diverged = check_training(
        max_accuracy=10.0, min_accuracy=10.0, num_classes=10, settings=DEFAULTS, diverged=True
    )
    assert "diverged" in diverged.error() and "training.grad_clip" in diverged.error()


def test_thresholds_follow_the_classes_and_stay_reachable() -> None:
    assert required_accuracy(2.0, 100) == pytest.approx(2.0)
    assert required_accuracy(2.0, 10) == pytest.approx(20.0)
    assert required_accuracy(2.0, 2) == pytest.approx(75.0)  # not an impossible 100%
    assert required_accuracy(1.5, 2) == pytest.approx(200 / 3)
    assert required_accuracy(2.0, 3) == pytest.approx(200 / 3)  # the cap binds no more
    assert required_accuracy(0.0, 10) == 0.0  # a bound of 0 turns the check off
    binary = check_training(max_accuracy=80.0, min_accuracy=70.0, num_classes=2, settings=DEFAULTS)
    assert [c.passed for c in binary.checks] == [True, True]


def test_a_predictor_without_skill_warns_by_default_and_fails_when_asked() -> None:
    report = check_predictor(kendall_tau=0.05, rmse=25.0, num_test=40, settings=DEFAULTS)
    assert [c.check for c in report.missed] == ["predictor_kendall_tau", "predictor_rmse"]
    assert report.outcome == "warned" and not report.fatal
    assert "search.evaluations" in (report.missed[0].advice or "")
    strict = HealthSettings(on_predictor_failure="fail")
    assert check_predictor(kendall_tau=0.05, rmse=5.0, num_test=40, settings=strict).fatal
    good = check_predictor(kendall_tau=0.6, rmse=3.0, num_test=40, settings=DEFAULTS)
    assert good.outcome == "passed"


def test_subnets_between_the_extremes_at_chance_are_named() -> None:
    """What a proxyless supernet trained 3 epochs on digits gave: its largest and smallest
    subnets at 94% and 90%, the sampled ones between them at 10-18% (chance is 10%)."""
    sampled = [14.8, 9.5, 12.3, 17.8, 12.0, 13.1, 13.9, 9.5, 94.4, 90.5]
    report = check_predictor(
        kendall_tau=0.5,
        rmse=6.0,
        num_test=8,
        settings=DEFAULTS,
        subnet_accuracies=sampled,
        num_classes=10,
        epochs=3,
    )
    (missed,) = report.missed
    assert missed.check == "median_subnet_vs_chance" and missed.value == pytest.approx(13.5)
    assert missed.threshold == pytest.approx(15.0) and report.outcome == "warned"
    assert "training.epochs (now 3)" in (missed.advice or "")
    assert report.figures["median_subnet_accuracy"] == pytest.approx(13.5)
    learned = [60.0, 70.0, 80.0, 90.0]
    assert (
        check_predictor(
            kendall_tau=0.5,
            rmse=6.0,
            num_test=8,
            settings=DEFAULTS,
            subnet_accuracies=learned,
            num_classes=10,
        ).outcome
        == "passed"
    )


def test_an_undefined_tau_is_no_skill() -> None:
    """All holdout subnets measured the same: nothing to rank (tau is NaN)."""
    report = check_predictor(kendall_tau=float("nan"), rmse=0.0, num_test=4, settings=DEFAULTS)
    (missed,) = report.missed
    assert missed.check == "predictor_kendall_tau" and missed.value is None
    assert "undefined" in missed.message


def test_health_settings_are_validated_naming_the_field(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=url,
        artifact_dir=tmp_path / "var",
        data_root=tmp_path / "data",
        dispatcher_enabled=False,
    )
    with TestClient(create_app(settings)) as client:
        for health, field, words in (
            ({"on_training_failure": "ignore"}, "health.on_training_failure", "'fail' or 'warn'"),
            ({"min_predictor_tau": 2}, "health.min_predictor_tau", "1"),
            ({"max_predictor_rmse": 0}, "health.max_predictor_rmse", "0"),
            ({"min_max_subnet_vs_chance": -1}, "health.min_max_subnet_vs_chance", "0"),
            ({"min_tau": 0.3}, "health.min_tau", "Extra inputs"),
        ):
            response = client.post("/api/v1/jobs", json={**SPEC, "health": health})
            assert response.status_code == 422, response.text
            (detail,) = response.json()["detail"]
            assert detail["field"] == field and words in detail["msg"], detail
        job = client.post("/api/v1/jobs", json=SPEC).json()
    assert job["spec"]["health"] == DEFAULTS.model_dump()  # defaults filled, as stored
    assert job["health"] == [] and job["warnings"] == []


def test_a_spec_stored_before_health_gates_runs_with_the_defaults(tmp_path: Path) -> None:
    old = {k: v for k, v in JobCreate(**SPEC).model_dump(mode="json").items() if k != "health"}
    request = JobRequest(
        job_id=1,
        attempt=1,
        artifact_dir=tmp_path,
        data_root=tmp_path,
        **{k: old[k] for k in ("space", "preset", "dataset", "training", "search", "devices")},
        num_workers=old["num_workers"],
        placement=old["placement"],
    )
    assert request.health == DEFAULTS


# --- the records ---------------------------------------------------------------------------------


def test_a_replayed_gate_is_recorded_once(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A resumed attempt replays the gates' points (``metrics.jsonl``): no warning is doubled,
    and a later gate's result adds to the earlier one's."""
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=database_url,
        artifact_dir=tmp_path / "var",
        data_root=tmp_path / "data",
        dispatcher_enabled=False,
    )
    with sessions() as session:
        job, _ = jobs.create_job(session, settings, JobCreate(**SPEC), owner="local")
        job_id = job.id
    with sessions() as session:
        assert leases.claim_next(session, "a", first_stage="training") is not None
    training = check_training(
        max_accuracy=30.0,
        min_accuracy=12.0,
        num_classes=10,
        settings=HealthSettings(on_training_failure="warn"),
    )
    predictor = check_predictor(kendall_tau=0.1, rmse=4.0, num_test=8, settings=DEFAULTS)

    def point(seq: int, report: HealthReport) -> Metrics:
        stage = "training" if report.gate == "training" else "building_predictor"
        data = {**report.model_dump(mode="json"), "outcome": report.outcome}
        return Metrics(
            seq=seq,
            at=datetime.now(UTC),
            stage=stage,
            key=f"health/{report.gate}",
            message=report.summary(),
            data=data,
        )

    for batch in (
        [point(1, training), point(2, training)],
        [point(3, predictor), point(4, training)],
    ):
        with sessions() as session:
            assert record_events(session, job_id, "a", 1, batch) == batch[-1].seq
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert [c.check for c in job.warnings] == ["min_subnet_vs_chance", "predictor_kendall_tau"]
        assert len(job.health) == 4
    assert reports_from_points([{"epoch": 1}, None]) == []  # other data points are not health


# --- whole jobs ----------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    settings: Settings

    def cli(self, *args: str) -> Any:
        env = {"NAS_URL": self.url, "NAS_TOKEN": "", "COLUMNS": "250"}
        return CliRunner().invoke(cli_app, list(args), env=env)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    ray_local: Any,
    profiled_host_tables: Callable[..., Path],
) -> Iterator[Served]:
    """The service with its dispatcher on the module's local Ray, the host table in place."""
    root = tmp_path_factory.mktemp("health")
    url = f"sqlite:///{root / 'nas.db'}"
    upgrade_database(url)
    (root / "data").mkdir()
    tables = profiled_host_tables(SPACE, num_classes=10, in_channels=3)
    shutil.copytree(tables, root / "var" / "tables")
    settings = Settings(
        database_url=url,
        artifact_dir=root / "var",
        data_root=root / "data",
        dispatcher_enabled=True,
    )
    with serving(settings) as url:
        yield Served(url, settings)


def _run(served: Served, spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Submit ``spec``, follow it with `nas watch`; the finished job and the CLI's result."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
        watched = served.cli("watch", str(job_id), "--poll", "0.5")
        return wait_finished(client, job_id, timeout=600), watched  # type: ignore[arg-type]


def _logs(served: Served, job_id: int) -> list[dict[str, Any]]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        return client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1000}).json()["data"]


def test_a_supernet_at_chance_fails_its_job_visibly(served: Served) -> None:
    job, watched = _run(served, {**AT_CHANCE, "name": "at chance"})
    assert job["state"] == "failed" and job["stage"] == "training"
    assert job["error"].startswith("health gate 'training' failed")
    assert "training.epochs" in job["error"] and "training.lr" in job["error"]
    assert [s["state"] for s in job["stages"]] == ["failed"]  # never went on to the search
    largest = next(c for c in job["health"] if c["check"] == "max_subnet_vs_chance")
    assert not largest["passed"] and largest["action"] == "fail"
    assert largest["value"] < largest["threshold"] == 20.0
    assert job["warnings"] == []  # it failed: that is in error, not a warning
    job_dir = served.settings.artifact_dir / "jobs" / str(job["id"])
    assert (job_dir / "supernet" / "latest.pt").exists()  # the checkpoint is kept
    logs = _logs(served, job["id"])
    (point,) = [line for line in logs if line["kind"] == "metrics" and "checks" in line["data"]]
    assert point["data"]["outcome"] == "failed" and point["message"].startswith("health training")
    missed = [line for line in logs if line["message"].startswith("health check")]
    assert {line["level"] for line in missed} == {"error"} and len(missed) == 2
    assert watched.exit_code == 1
    assert "failed: health gate 'training' failed" in watched.output
    listed = served.cli("jobs")
    assert "failed: max_subnet_vs_chance" in listed.output


def test_warned_gates_let_the_job_succeed_with_visible_warnings(served: Served) -> None:
    """At chance with ``on_training_failure: warn``: the job goes on; the predictor it fits on
    accuracies that are noise around chance has no skill, which is a warning too."""
    health = {"on_training_failure": "warn"}
    job, watched = _run(served, {**AT_CHANCE, "name": "warned", "health": health})
    assert job["state"] == "succeeded", job["error"]
    warned = [c["check"] for c in job["warnings"]]
    assert warned[:2] == ["max_subnet_vs_chance", "min_subnet_vs_chance"]
    assert "predictor_kendall_tau" in warned or "predictor_rmse" in warned
    holdout = next(
        line for line in _logs(served, job["id"]) if line["message"].startswith("predictor ")
    )
    tau = next(c for c in job["health"] if c["check"] == "predictor_kendall_tau")
    assert tau["value"] == pytest.approx(holdout["data"]["kendall_tau"])  # the measured figure
    assert all(c["advice"] for c in job["warnings"])
    assert watched.exit_code == 0
    assert f"job {job['id']} succeeded with {len(warned)} warnings" in watched.output
    assert "what to change" in watched.output
    listed = served.cli("jobs")
    assert f"{len(warned)} warnings" in listed.output


def test_a_healthy_job_has_no_warning(served: Served) -> None:
    job, watched = _run(served, {**SPEC, "name": "healthy", "training": {**TRAINING, "epochs": 2}})
    assert job["state"] == "succeeded", job["error"]
    assert job["warnings"] == [], job["warnings"]
    assert {c["check"] for c in job["health"]} == {
        "max_subnet_vs_chance",
        "min_subnet_vs_chance",
        "median_subnet_vs_chance",
        "predictor_kendall_tau",
        "predictor_rmse",
    }
    assert all(c["passed"] for c in job["health"])
    assert watched.exit_code == 0 and "warning" not in watched.output
