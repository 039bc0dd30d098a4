"""The REST API through HTTP on SQLite and PostgreSQL: jobs, devices, spaces, auth, errors.

The dispatcher is off here (no Ray): these tests are about what the API stores and answers;
tests/test_dispatcher.py runs jobs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import search_spaces
from nas.hardware import (
    BUILTIN_NAMES,
    Calibration,
    Device,
    LatencyEntry,
    LatencyTable,
    TimingPolicy,
)
from nas.hardware.table import BlockSpecModel
from service.app import create_app
from service.migrate import upgrade_database
from service.settings import Settings, fingerprint

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC: dict[str, Any] = {
    "name": "tiny bignas",
    "space": "bignas",
    "dataset": {"kind": "synthetic", "num_samples": 200, "resolution": 24},
    "training": {"epochs": 1, "batch_size": 32, "sampler": "uniform", "warmup_epochs": 0},
}


def _table(device: str = "pi4-ort", median_ms: float = 0.1, **changes: Any) -> dict[str, Any]:
    """A complete latency table in nas.hardware's format: one entry per distinct block of the
    tiny bignas space's reference archs (as a profile would measure), and a calibration."""
    space = search_spaces.get("bignas", preset="tiny")
    archs = space.reference_archs().values()
    blocks = {block.key: block for arch in archs for block in space.blocks(arch)}
    entries = {
        key: LatencyEntry(
            spec=BlockSpecModel.of(block),
            median_ms=median_ms,
            iqr_ms=0.01,
            min_ms=median_ms * 0.9,
            repeats=15,
            overhead_ms=0.002,
        )
        for key, block in blocks.items()
    }
    when = datetime(2026, 11, 1, tzinfo=UTC)
    table = LatencyTable(
        space="bignas",
        preset="tiny",
        resolutions=sorted({arch.resolution for arch in archs}),
        device=Device(name=device, runtime="onnxruntime", threads=4, hardware="Pi 4"),
        runtime="onnxruntime",
        block_timing=TimingPolicy(),
        network_timing=TimingPolicy(),
        software={"onnxruntime": "1.20"},
        created_at=when,
        updated_at=when,
        expected_entries=len(entries),
        entries=entries,
        calibration=Calibration(slope=1.05, intercept_ms=0.2, samples=20, r2=0.99, mape=0.03),
    )
    return {**table.model_dump(mode="json"), **changes}


def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "artifact_dir": tmp_path / "var",
        "data_root": tmp_path / "data",
        "api_tokens": [TOKEN],
        "dispatcher_enabled": False,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    return _settings(database_url, tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _submit(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/v1/jobs", json={**SPEC, **changes}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


# --- jobs ------------------------------------------------------------------------------------


def test_submit_stores_a_queued_job_with_defaults_filled(client: TestClient) -> None:
    response = client.post("/api/v1/jobs", json=SPEC, headers=AUTH)
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert client.get(response.headers["location"]).json() == job
    assert job["state"] == "queued" and job["progress"] == 0 and job["attempt"] == 0
    assert job["owner"] == fingerprint(TOKEN) and TOKEN not in response.text
    assert job["spec"]["preset"] == "tiny" and job["spec"]["devices"] == ["host-cpu-onnxruntime"]
    assert job["spec"]["search"]["strategy"] == "linas"
    assert job["spec"]["training"]["epochs"] == 1
    logs = client.get(f"/api/v1/jobs/{job['id']}/logs").json()
    assert [line["message"] for line in logs["data"]] == [f"job submitted by {job['owner']}"]


def test_list_filters_by_state_and_paginates(client: TestClient) -> None:
    ids = [_submit(client, name=f"job {i}")["id"] for i in range(5)]
    client.post(f"/api/v1/jobs/{ids[1]}/cancel", headers=AUTH)
    page = client.get("/api/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [job["id"] for job in page["data"]] == [ids[3], ids[2]]  # newest first
    queued = client.get("/api/v1/jobs", params={"state": "queued"}).json()
    assert queued["count"] == 4 and ids[1] not in [job["id"] for job in queued["data"]]
    both = client.get("/api/v1/jobs", params=[("state", "queued"), ("state", "cancelled")])
    assert both.json()["count"] == 5
    assert client.get("/api/v1/jobs", params={"offset": 10}).json()["data"] == []


def test_the_job_list_is_its_models_dump_and_follows_every_change(
    client: TestClient, settings: Settings
) -> None:
    """GET /jobs encodes each job itself and keeps the bytes (service.api.caching): each page
    is byte for byte the JobsPublic of the ORM jobs, and a change to a job (its state, a
    stage, a health report, a stage moving on) shows at once."""
    from sqlalchemy import update

    from service.api.schemas.jobs import JobPublic, JobsPublic
    from service.db import create_db_engine, create_session_factory, utcnow
    from service.models import Job, JobEvent, JobStage
    from service.store import jobs as store
    from workers.health import check_predictor
    from workers.spec import HealthSettings

    ids = [_submit(client, name=f"job {i}")["id"] for i in range(4)]
    client.post(f"/api/v1/jobs/{ids[1]}/cancel", headers=AUTH)
    engine = create_db_engine(settings.database_url)
    sessions = create_session_factory(engine)

    def expected(state: list[str], limit: int, offset: int) -> bytes:
        with sessions() as session:
            jobs, total = store.list_jobs(session, states=state, limit=limit, offset=offset)
        page = JobsPublic(
            data=[JobPublic.model_validate(job) for job in jobs],
            count=total,
            limit=limit,
            offset=offset,
        )
        return page.model_dump_json().encode()

    def check() -> None:
        for state, limit, offset in (
            ([], 50, 0),
            ([], 2, 1),
            (["queued", "cancelled"], 50, 0),
            (["training"], 50, 0),
            (["queued"], 1, 2),
            ([], 50, 10),
        ):
            params: dict[str, Any] = {"state": state, "limit": limit, "offset": offset}
            response = client.get("/api/v1/jobs", params=params)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.content == expected(state, limit, offset), params

    try:
        check()
        report = check_predictor(kendall_tau=0.04, rmse=25.3, num_test=8, settings=HealthSettings())
        with sessions() as session:  # the job starts and its predictor cannot rank (a warning)
            now = utcnow()
            session.execute(
                update(Job)
                .where(Job.id == ids[2])
                .values(state="training", stage="training", progress=40.0, attempt=1)
            )
            session.add(JobStage(job_id=ids[2], name="training", position=0, started_at=now))
            session.add(
                JobEvent(
                    job_id=ids[2],
                    kind="metrics",
                    stage="building_predictor",
                    key="health/predictor",
                    message=report.summary(),
                    data={**report.model_dump(mode="json"), "outcome": report.outcome},
                )
            )
            session.commit()
        check()
        (running,) = client.get("/api/v1/jobs", params={"state": "training"}).json()["data"]
        assert running["id"] == ids[2] and len(running["warnings"]) == 2
        assert running["stages"][0]["progress"] == 0
        with sessions() as session:  # only a stage row changes: no column of the job does
            session.execute(update(JobStage).where(JobStage.job_id == ids[2]).values(progress=80.0))
            session.commit()
        check()
        (running,) = client.get("/api/v1/jobs", params={"state": "training"}).json()["data"]
        assert running["stages"][0]["progress"] == 80
    finally:
        engine.dispose()


def test_cancel_a_queued_job_then_delete_it(client: TestClient, settings: Settings) -> None:
    job = _submit(client)
    delete = client.delete(f"/api/v1/jobs/{job['id']}", headers=AUTH)
    assert delete.status_code == 409 and "cancel it first" in delete.json()["detail"]
    cancel = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=AUTH)
    assert cancel.status_code == 200
    body = cancel.json()
    assert body["state"] == "cancelled" and body["finished_at"] is not None
    assert body["cancel_requested"] is True
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    logs = client.get(f"/api/v1/jobs/{job['id']}/logs", params={"after": 0, "limit": 1}).json()
    assert len(logs["data"]) == 1
    rest = client.get(f"/api/v1/jobs/{job['id']}/logs", params={"after": logs["next_after"]})
    assert [line["message"] for line in rest.json()["data"]] == ["cancelled while queued"]
    files = settings.artifact_dir / "jobs" / str(job["id"])
    files.mkdir(parents=True)
    (files / "leftover.txt").write_text("x")
    assert client.delete(f"/api/v1/jobs/{job['id']}", headers=AUTH).status_code == 204
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}/logs").status_code == 404
    assert not files.exists()


def test_twenty_concurrent_submissions_are_each_stored_once(client: TestClient) -> None:
    def submit(i: int) -> Any:
        return client.post("/api/v1/jobs", json={**SPEC, "name": f"c{i}"}, headers=AUTH)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(submit, range(20)))
    assert [r.status_code for r in responses] == [201] * 20
    jobs = [r.json() for r in responses]
    assert len({job["id"] for job in jobs}) == 20
    listed = client.get("/api/v1/jobs", params={"limit": 100}).json()
    assert listed["count"] == 20
    assert sorted(job["name"] for job in listed["data"]) == sorted(f"c{i}" for i in range(20))


def test_a_retried_submission_with_the_same_key_is_stored_once(client: TestClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "submit-42"}

    def submit(_: int) -> Any:
        return client.post("/api/v1/jobs", json=SPEC, headers=headers)

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(submit, range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.headers["location"] for r in responses}) == 1
    assert client.get("/api/v1/jobs").json()["count"] == 1
    other = client.post("/api/v1/jobs", json={**SPEC, "name": "other"}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]


def test_a_registered_device_can_be_targeted(client: TestClient) -> None:
    assert client.post("/api/v1/devices", json=_table(), headers=AUTH).status_code == 201
    job = _submit(
        client,
        devices=["pi4-ort", "host-cpu-torch"],
        search={"budgets": {"pi4-ort": {"latency_ms": 5}, "host-cpu-torch": {"macs": 10**6}}},
    )
    assert job["spec"]["search"]["budgets"]["pi4-ort"] == {"latency_ms": 5.0, "macs": None}
    elsewhere = client.post(
        "/api/v1/jobs",
        json={
            **SPEC,
            "space": "ofa_mbv3",
            "devices": ["pi4-ort"],
            "training": {**SPEC["training"], "schedule": "single_stage"},
        },
        headers=AUTH,
    )
    assert elsewhere.status_code == 422
    (error,) = elsewhere.json()["detail"]
    assert error["field"] == "devices.0" and "no latency table for space 'ofa_mbv3'" in error["msg"]


# --- devices and spaces ----------------------------------------------------------------------


def test_devices_list_builtins_and_registered_ones(client: TestClient) -> None:
    builtins = client.get("/api/v1/devices").json()
    assert [d["name"] for d in builtins["data"]] == list(BUILTIN_NAMES)
    assert all(d["builtin"] and d["tables"] == [] for d in builtins["data"])
    uploaded = _table()
    response = client.post("/api/v1/devices", json=uploaded, headers=AUTH)
    assert response.status_code == 201
    assert response.headers["location"].endswith("/api/v1/devices/pi4-ort")
    device = client.get("/api/v1/devices/pi4-ort").json()
    assert device["builtin"] is False and device["threads"] == 4 and device["hardware"] == "Pi 4"
    (table,) = device["tables"]
    assert table["revision"] == 1 and table["space"] == "bignas" and len(table["sha256"]) == 64
    stored = client.get(f"/api/v1/devices/pi4-ort/latency-tables/{table['id']}").json()
    assert stored["content"] == uploaded  # as uploaded, calibration and timing included
    assert client.get("/api/v1/devices").json()["count"] == len(BUILTIN_NAMES) + 1


def test_a_first_upload_registers_its_device(client: TestClient) -> None:
    """What `nas device upload` does: it knows only the latency-tables endpoint."""
    url = "/api/v1/devices/jetson-ort/latency-tables"
    response = client.post(url, json=_table(device="jetson-ort"), headers=AUTH)
    assert response.status_code == 201 and response.json()["revision"] == 1
    assert client.get("/api/v1/devices/jetson-ort").json()["tables"] == [response.json()]


def test_a_new_table_is_a_new_revision_and_a_repeat_is_not(client: TestClient) -> None:
    client.post("/api/v1/devices", json=_table(), headers=AUTH)
    url = "/api/v1/devices/pi4-ort/latency-tables"
    remeasured = _table(median_ms=0.09)
    first = client.post(url, json=remeasured, headers=AUTH)
    assert first.status_code == 201 and first.json()["revision"] == 2
    repeat = client.post(url, json=remeasured, headers=AUTH)
    assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"]
    other = client.post(url, json=_table(preset="imagenet"), headers=AUTH)
    assert other.status_code == 201 and other.json()["revision"] == 1
    assert len(client.get("/api/v1/devices/pi4-ort").json()["tables"]) == 3
    moved = _table()
    moved["device"]["threads"] = 2
    conflict = client.post(url, json=moved, headers=AUTH)
    assert conflict.status_code == 409 and "settings" in conflict.json()["detail"]


def test_spaces_list_dimensions_and_presets(client: TestClient) -> None:
    spaces = client.get("/api/v1/spaces").json()
    assert [s["name"] for s in spaces["data"]] == search_spaces.names()
    for space in spaces["data"]:
        assert list(space["presets"]) == search_spaces.presets(space["name"])
        tiny = space["presets"]["tiny"]
        assert tiny["dimensions"] and tiny["num_subnets"] > 1
        assert tiny["min_macs"] < tiny["max_macs"]
    one = client.get("/api/v1/spaces/ofa_mbv3").json()
    assert one == next(s for s in spaces["data"] if s["name"] == "ofa_mbv3")


# --- bad input -------------------------------------------------------------------------------

_BAD_JOBS: list[tuple[dict[str, Any], str]] = [
    ({"space": "darts"}, "space"),
    ({"preset": "huge"}, "preset"),
    ({"devices": ["phone"]}, "devices.0"),
    ({"devices": []}, "devices"),
    ({"devices": ["host-cpu-torch", "host-cpu-torch"]}, "devices"),
    ({"training": {"epochs": 0}}, "training.epochs"),
    ({"training": {"sampler": "greedy"}}, "training.sampler"),
    ({"dataset": {"kind": "imagefolder", "root": "../../etc"}}, "dataset.root"),
    ({"dataset": {"kind": "mnist"}}, "dataset.kind"),
    ({"search": {"strategy": "grid"}}, "search.strategy"),
    ({"search": {"population": 10**9}}, "search.population"),
    ({"search": {"budgets": {"pi": {"latency_ms": 3}}}}, "search.budgets.pi"),
    ({"search": {"budgets": {"host-cpu-onnxruntime": {}}}}, "search.budgets.host-cpu-onnxruntime"),
    ({"name": ""}, "name"),
    ({"name": "line\nbreak"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"num_workers": 0}, "num_workers"),
    ({"priority": 1}, "priority"),
    ({"placement": {"strategy": "ANYWHERE"}}, "placement.strategy"),
    ({"placement": {"resources_per_worker": {"GPU": 0}}}, "placement.resources_per_worker"),
    ({"placement": {"resources_per_worker": {"a node": 1}}}, "placement.resources_per_worker"),
    ({"placement": {"nodes": ["a"]}}, "placement.nodes"),
]


def _field_errors(response: Any, status: int, field: str | None) -> str | None:
    """Why ``response`` is not the expected 4xx naming ``field``; None when it is."""
    if response.status_code != status:
        return f"status {response.status_code}, expected {status}: {response.text[:300]}"
    body = response.json()
    if not body.get("detail") or "Traceback" in response.text:
        return f"no message: {response.text[:300]}"
    if field is not None and field not in [item["field"] for item in body["detail"]]:
        return f"{field!r} not named: {body}"
    return None


def test_a_bad_spec_names_the_field(client: TestClient) -> None:
    """One database for all the cases: each is a request that must not change anything."""
    failures = {}
    for changes, field in _BAD_JOBS:
        response = client.post("/api/v1/jobs", json={**SPEC, **changes}, headers=AUTH)
        problem = _field_errors(response, 422, field)
        if problem is None and not response.json()["message"]:
            problem = "no summary message"
        if problem is not None:
            failures[field] = problem
    assert failures == {}
    assert client.get("/api/v1/jobs").json()["count"] == 0


def _edited(*path: str, value: Any) -> dict[str, Any]:
    """A valid table with one value replaced (``*``: in the first entry)."""
    table = _table()
    node = table
    for key in path[:-1]:
        node = node[next(iter(node))] if key == "*" else node[key]
    node[path[-1]] = value
    return table


# Python's JSON parser accepts NaN; a JSON column cannot hold it.
_NAN_TABLE = json.dumps(_edited("calibration", "intercept_ms", value=float("nan")))

_BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/api/v1/jobs", {"content": b"{not json"}, 422, "body"),
    (
        "POST",
        "/api/v1/jobs",
        {"content": b'{"name":"a","space":"bignas","training":{"lr":1e999}}'},
        422,
        "training.lr",
    ),
    (
        "POST",
        "/api/v1/jobs",
        {"content": b'{"name":"a","space":"bignas","training":{"warmup_epochs":Infinity}}'},
        422,
        "training.warmup_epochs",
    ),
    ("POST", "/api/v1/jobs", {"content": b"[]"}, 422, "body"),
    (
        "POST",
        "/api/v1/jobs",
        {"json": SPEC, "headers": {"Idempotency-Key": "k" * 200}},
        422,
        "header.idempotency-key",
    ),
    ("GET", "/api/v1/jobs?state=paused", {}, 422, "query.state.0"),
    ("GET", "/api/v1/jobs?limit=0", {}, 422, "query.limit"),
    ("GET", "/api/v1/jobs?limit=100000", {}, 422, "query.limit"),
    ("GET", "/api/v1/jobs?offset=-1", {}, 422, "query.offset"),
    ("GET", "/api/v1/jobs/abc", {}, 422, "path.job_id"),
    ("GET", "/api/v1/jobs/0", {}, 422, "path.job_id"),
    ("GET", f"/api/v1/jobs/{2**40}", {}, 422, "path.job_id"),
    ("GET", "/api/v1/jobs/999", {}, 404, None),
    ("POST", "/api/v1/jobs/999/cancel", {}, 404, None),
    ("DELETE", "/api/v1/jobs/999", {}, 404, None),
    ("GET", "/api/v1/jobs/999/logs", {}, 404, None),
    ("GET", "/api/v1/jobs/1/logs?after=-5", {}, 422, "query.after"),
    ("PUT", "/api/v1/jobs", {}, 405, None),
    ("GET", "/api/v1/devices/Not%20A%20Name", {}, 422, "path.name"),
    ("GET", "/api/v1/devices/unknown", {}, 404, None),
    ("GET", "/api/v1/devices/pi4-ort/latency-tables/0", {}, 422, "path.table_id"),
    ("GET", "/api/v1/devices/unknown/latency-tables/5", {}, 404, None),
    ("POST", "/api/v1/devices", {"json": {"device": {"name": "p"}}}, 422, "space"),
    ("POST", "/api/v1/devices", {"json": _table(runtime="torch")}, 422, "runtime"),
    ("POST", "/api/v1/devices", {"json": _table(space="darts")}, 422, "space"),
    ("POST", "/api/v1/devices", {"json": _table(preset="big")}, 422, "preset"),
    ("POST", "/api/v1/devices", {"json": _table(format_version=2)}, 422, "format_version"),
    ("POST", "/api/v1/devices", {"json": _table(expected_entries=500)}, 422, "entries"),
    ("POST", "/api/v1/devices", {"json": _table(calibration=None)}, 422, "entries"),
    (
        "POST",
        "/api/v1/devices",
        {"json": _edited("entries", "*", "median_ms", value=-1.0)},
        422,
        f"entries.{next(iter(_table()['entries']))}.median_ms",
    ),
    (
        "POST",
        "/api/v1/devices",
        {"json": _edited("device", "name", value="Pi 4")},
        422,
        "device.name",
    ),
    (
        "POST",
        "/api/v1/devices",
        {"json": _table(device="host-cpu-onnxruntime")},
        422,
        "device.name",
    ),
    (
        "POST",
        "/api/v1/devices",
        {"json": _edited("device", "hardware", value="a\u0000b")},
        422,
        "device.hardware",
    ),
    ("POST", "/api/v1/devices", {"content": _NAN_TABLE}, 422, "calibration.intercept_ms"),
    (
        "POST",
        "/api/v1/devices/pi4-ort/latency-tables",
        {"json": _table(device="other")},
        422,
        "device.name",
    ),
    (
        "POST",
        "/api/v1/devices/host-cpu-onnxruntime/latency-tables",
        {"json": _table(device="host-cpu-onnxruntime")},
        409,
        None,
    ),
    (
        "POST",
        "/api/v1/devices/pi4-ort/latency-tables",
        {"json": {"entries": "none"}},
        422,
        "entries",
    ),
    ("GET", "/api/v1/spaces/darts", {}, 404, None),
    ("GET", "/no/such/route", {}, 404, None),
]


def test_bad_input_on_every_endpoint_is_a_4xx_with_a_message(client: TestClient) -> None:
    failures = {}
    for method, url, kwargs, status, field in _BAD_REQUESTS:
        headers = {**AUTH, "Content-Type": "application/json", **kwargs.get("headers", {})}
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        response = client.request(method, url, headers=headers, **options)
        problem = _field_errors(response, status, field)
        if problem is not None:
            failures[f"{method} {url} {str(options)[:80]}"] = problem
    assert failures == {}
    assert client.get("/api/v1/devices").json()["count"] == len(BUILTIN_NAMES)


def test_a_duplicate_device_is_a_conflict(client: TestClient) -> None:
    assert client.post("/api/v1/devices", json=_table(), headers=AUTH).status_code == 201
    again = client.post("/api/v1/devices", json=_table(median_ms=0.2), headers=AUTH)
    assert again.status_code == 409 and "already registered" in again.json()["detail"]
    assert len(client.get("/api/v1/devices/pi4-ort").json()["tables"]) == 1


def test_an_oversized_upload_is_refused_before_it_is_read(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    table = json.dumps(_table()).encode()
    limit = len(table) // 2
    settings = _settings(database_url, tmp_path, max_request_bytes=limit)
    headers = {**AUTH, "Content-Type": "application/json"}
    with TestClient(create_app(settings)) as client:
        declared = client.post("/api/v1/devices", content=table, headers=headers)
        chunked = client.post(
            "/api/v1/devices", content=iter([table[:limit], table[limit:]]), headers=headers
        )
        listed = client.get("/api/v1/devices").json()
    assert declared.status_code == 413 and f"{limit} bytes" in declared.json()["detail"]
    assert chunked.status_code == 413 and "NAS_MAX_REQUEST_BYTES" in chunked.json()["detail"]
    assert listed["count"] == len(BUILTIN_NAMES)


# --- auth ------------------------------------------------------------------------------------


def _mutating_operations(client: TestClient) -> list[tuple[str, str]]:
    """Every non-GET operation of the OpenAPI schema, path parameters filled in."""
    operations = []
    for path, methods in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method in methods:
            if method != "get":
                operations.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return operations


def test_every_mutating_endpoint_needs_a_valid_token(client: TestClient) -> None:
    operations = _mutating_operations(client)
    assert len(operations) >= 5
    for method, url in operations:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            response = client.request(method, url, json=SPEC, headers=headers)
            assert response.status_code == 401, (method, url, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["detail"]
    assert client.get("/api/v1/jobs").status_code == 200  # reads stay open by default
    assert client.get("/api/v1/jobs").json()["count"] == 0


def test_reads_can_require_a_token_too(database_url: str, tmp_path: Path) -> None:
    upgrade_database(database_url)
    settings = _settings(database_url, tmp_path, reads_require_token=True)
    with TestClient(create_app(settings)) as client:
        for url in ("/api/v1/jobs", "/api/v1/devices", "/api/v1/spaces", "/api/v1/jobs/1"):
            assert client.get(url).status_code == 401, url
        assert client.get("/api/v1/jobs", headers=AUTH).status_code == 200
        assert client.get("/health").status_code == 200


def test_without_configured_tokens_local_requests_are_open(
    database_url: str, tmp_path: Path
) -> None:
    """Only allowed on a loopback host (Settings refuses otherwise)."""
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    with TestClient(create_app(_settings(database_url, tmp_path, api_tokens=[]))) as client:
        response = client.post("/api/v1/jobs", json=SPEC)
    assert response.status_code == 201 and response.json()["owner"] == "local"
