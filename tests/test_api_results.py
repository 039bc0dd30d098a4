"""The result endpoints through HTTP on SQLite and PostgreSQL: Pareto fronts, subnets (filters,
sorting, pages), subnet details, downloads with checksums, specialisation's refusals, auth.

The results are written straight into the tables (tests/_results.py), as a finished job
leaves them; specialising and exporting a real trained job is the integration test's part.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from _results import DEVICES, ORT, TORCH, Results, fill_results
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from test_api_jobs import AUTH, SPEC, TOKEN, _field_errors, _settings, _table

from service.api.schemas.results import FrontsPublic, SubnetRecord
from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.settings import Settings
from service.store import results_read

API = "/api/v1"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    return _settings(database_url, tmp_path)


@pytest.fixture
def results(settings: Settings) -> Results:
    return fill_results(settings)


@pytest.fixture
def client(settings: Settings, results: Results) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _subnets(client: TestClient, job_id: int, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/jobs/{job_id}/subnets", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _nulls_last(rows: list[Any], key: Any, reverse: bool) -> list[int]:
    """Ids sorted by ``key`` (missing values last, ties by id), as the API promises."""
    known = [r for r in rows if key(r) is not None]
    known.sort(key=lambda r: r.id)
    known.sort(key=key, reverse=reverse)
    return [r.id for r in known] + sorted(r.id for r in rows if key(r) is None)


# --- fronts ------------------------------------------------------------------------------------


def test_fronts_follow_the_job_devices_with_members_along_each_front(
    client: TestClient, results: Results
) -> None:
    body = client.get(f"{API}/jobs/{results.job_id}/fronts").json()
    assert body["count"] == 2 and [f["device"] for f in body["data"]] == DEVICES
    for front in body["data"]:
        device = front["device"]
        ids = [m["id"] for m in front["members"]]
        assert ids == results.fronts[device]
        latencies = [results.by_id(i).latency_ms(device) for i in ids]
        assert latencies == sorted(latencies, reverse=True)
        accuracies = [results.by_id(i).measured for i in ids]
        assert accuracies == sorted(accuracies, reverse=True)  # a front: slower is more accurate
        assert all(m["measured_accuracy"] is not None for m in front["members"])
        assert front["objectives"] == ["accuracy", f"latency:{device}"]
        assert front["hypervolume"] > 0
        assert all(
            m["job_id"] == results.job_id and m["arch"]["space"] == "bignas"
            for m in front["members"]
        )
    ort_front, torch_front = body["data"]
    assert ort_front["budget"] == {"latency_ms": results.budget_ms}
    # the pick: the most accurate *measured* subnet within the budget; the search's favourite
    # (predicted 99%, within the budget) was never measured, so it is neither picked nor shown
    within = [r for r in results.rows if (r.latency_ms(ORT) or 1e9) <= results.budget_ms]
    favourite = max((r for r in within if r.predicted is not None), key=lambda r: r.predicted)  # type: ignore[arg-type, return-value]
    assert favourite.measured is None
    best = max((r for r in within if r.measured is not None), key=lambda r: r.measured)  # type: ignore[arg-type, return-value]
    assert ort_front["best_subnet_id"] == best.id == results.fronts[ORT][0]
    assert favourite.id not in results.fronts[ORT] + results.fronts[TORCH]
    assert torch_front["budget"] is None  # no budget: the most accurate member
    assert torch_front["best_subnet_id"] == results.fronts[TORCH][0]
    one = client.get(f"{API}/jobs/{results.job_id}/fronts/{TORCH}")
    assert one.status_code == 200 and one.json() == torch_front


def test_fronts_of_a_job_that_has_not_searched_yet(client: TestClient, results: Results) -> None:
    queued = client.post(f"{API}/jobs", json=SPEC, headers=AUTH).json()
    assert client.get(f"{API}/jobs/{queued['id']}/fronts").json() == {"data": [], "count": 0}
    early = client.get(f"{API}/jobs/{queued['id']}/fronts/{ORT}")
    assert early.status_code == 409 and "searching stage" in early.json()["detail"]
    assert _subnets(client, queued["id"]) == {"data": [], "count": 0, "limit": 50, "offset": 0}
    missing = client.get(f"{API}/jobs/{results.job_id}/fronts/pi4-ort")
    assert missing.status_code == 404 and ORT in missing.json()["detail"]


def _fronts_of_the_models(settings: Settings, job_id: int) -> dict[str, bytes]:
    """What the front routes answered before they kept answers (service.api.caching): the
    store's pydantic models, dumped. Keyed by URL."""
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            fronts = results_read.list_fronts(session, job_id)
            answers = {
                f"{API}/jobs/{job_id}/fronts": FrontsPublic(data=fronts, count=len(fronts)),
                **{
                    f"{API}/jobs/{job_id}/fronts/{device}": results_read.get_front(
                        session, job_id, device
                    )
                    for device in DEVICES
                },
            }
    finally:
        engine.dispose()
    return {url: answer.model_dump_json().encode() for url, answer in answers.items()}


def test_fronts_carry_a_strong_etag_and_answer_304_to_it(
    client: TestClient, results: Results, settings: Settings
) -> None:
    """Each answer is the store's models dumped byte for byte, with an ETag that a client
    sends back in If-None-Match to be told 304, without a body, while the front is unchanged."""
    expected = _fronts_of_the_models(settings, results.job_id)
    tags = set()
    for url, body in expected.items():
        first = client.get(url)
        assert first.status_code == 200 and first.content == body, url
        etag = first.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
        assert first.headers["cache-control"] == "no-cache"
        assert client.get(url).headers["etag"] == etag  # the same bytes, the same tag
        for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = client.get(url, headers={"If-None-Match": sent})
            assert again.status_code == 304 and again.content == b"", (url, sent)
            assert again.headers["etag"] == etag and again.headers["cache-control"] == "no-cache"
        other = client.get(url, headers={"If-None-Match": '"0123"'})
        assert other.status_code == 200 and other.content == body
        tags.add(etag)
    assert len(tags) == len(expected)
    # refusals carry no validator
    missing = client.get(f"{API}/jobs/{results.job_id}/fronts/pi4-ort")
    assert missing.status_code == 404 and "etag" not in missing.headers


def test_a_front_changed_by_a_specialisation_is_answered_anew(
    client: TestClient, results: Results, settings: Settings
) -> None:
    """No stale answer, no stale ETag: a member's latency measured again, then a subnet
    recorded and the fronts recomputed (what a specialisation does), each give new bytes
    (the models' dump, read afresh) and a new ETag; the old ETag is a full answer again."""
    from service.store.results import refresh_fronts

    urls = list(_fronts_of_the_models(settings, results.job_id))
    before = {url: client.get(url) for url in urls}
    member = results.by_id(results.fronts[ORT][-1])
    again = SubnetRecord(
        arch_id=member.arch_id,
        arch={"space": "bignas"},
        resolution=32,
        macs=member.macs,
        params=member.params,
        latencies={TORCH: {"predicted_ms": 123.0}},  # no front changes; a member's figure does
    )
    best = results.by_id(results.fronts[ORT][0])
    newcomer = SubnetRecord(
        arch_id="b" * 16,
        arch={"space": "bignas"},
        resolution=32,
        macs=best.macs,
        params=best.params,
        measured_accuracy=best.measured + 0.5,  # type: ignore[operator]
        latencies={ORT: {"predicted_ms": 0.2, "measured_ms": 0.2}},  # faster than any
    )
    engine = create_db_engine(settings.database_url)
    try:
        for write in ("latency", "newcomer"):
            with create_session_factory(engine)() as session:
                if write == "latency":
                    results_read.record_subnet(session, results.job_id, again)
                else:
                    added = results_read.record_subnet(session, results.job_id, newcomer)
                    refresh_fronts(session, results.job_id)
            expected = _fronts_of_the_models(settings, results.job_id)
            for url in urls:
                if url.endswith(TORCH) and write == "newcomer":
                    continue  # no latency on torch: that front did not change
                old = before[url]
                now = client.get(url, headers={"If-None-Match": old.headers["etag"]})
                assert now.status_code == 200, (write, url)
                assert now.content == expected[url] != old.content, (write, url)
                assert now.headers["etag"] != old.headers["etag"], (write, url)
                before[url] = now
    finally:
        engine.dispose()
    front = client.get(f"{API}/jobs/{results.job_id}/fronts/{ORT}").json()
    assert [m["id"] for m in front["members"]] == [added] and front["best_subnet_id"] == added


# --- subnets -----------------------------------------------------------------------------------


def test_subnets_sort_by_each_key_with_missing_values_last(
    client: TestClient, results: Results
) -> None:
    rows, job = results.rows, results.job_id
    default = _subnets(client, job, limit=500)
    assert default["count"] == len(rows) and default["limit"] == 500
    assert [s["id"] for s in default["data"]] == _nulls_last(rows, lambda r: r.accuracy, True)
    assert default["data"][-1]["predicted_accuracy"] is None  # the unscored subnet comes last
    ascending = _subnets(client, job, sort="accuracy", order="asc")["data"]
    assert [s["id"] for s in ascending] == _nulls_last(rows, lambda r: r.accuracy, False)
    macs = _subnets(client, job, sort="macs")["data"]
    assert [s["id"] for s in macs] == _nulls_last(rows, lambda r: r.macs, False)
    params = _subnets(client, job, sort="params", order="desc")["data"]
    assert [s["id"] for s in params] == _nulls_last(rows, lambda r: r.params, True)
    for device in DEVICES:
        fastest = _subnets(client, job, sort="latency", device=device)["data"]
        expected = _nulls_last(rows, lambda r, d=device: r.latency_ms(d), False)
        assert [s["id"] for s in fastest] == expected
    untimed = _subnets(client, job, sort="latency", device=TORCH)["data"][-1]
    assert TORCH not in untimed["latencies"] and ORT in untimed["latencies"]


def test_subnets_paginate_over_a_stable_order(client: TestClient, results: Results) -> None:
    everything = [s["id"] for s in _subnets(client, results.job_id, sort="macs")["data"]]
    pages = [
        _subnets(client, results.job_id, sort="macs", limit=5, offset=offset)
        for offset in range(0, len(everything), 5)
    ]
    assert [s["id"] for page in pages for s in page["data"]] == everything
    assert {page["count"] for page in pages} == {len(everything)}
    beyond = _subnets(client, results.job_id, offset=len(everything))
    assert beyond["data"] == [] and beyond["count"] == len(everything)


def test_subnet_filters_combine(client: TestClient, results: Results) -> None:
    rows, job = results.rows, results.job_id

    def ids(**params: Any) -> set[int]:
        page = _subnets(client, job, limit=500, **params)
        assert page["count"] == len(page["data"])
        return {s["id"] for s in page["data"]}

    accurate = ids(min_accuracy=85)
    assert accurate == {r.id for r in rows if r.accuracy is not None and r.accuracy >= 85}
    assert 0 < len(accurate) < len(rows)
    small = ids(max_macs=4_000_000)
    assert small == {r.id for r in rows if r.macs <= 4_000_000} and 0 < len(small) < len(rows)
    fast = ids(device=ORT, max_latency_ms=results.budget_ms)
    assert fast == {r.id for r in rows if r.latency_ms(ORT) <= results.budget_ms}
    assert ids(device=ORT, on_front=True) == set(results.fronts[ORT])
    assert ids(device=TORCH, on_front=False) == {r.id for r in rows} - set(results.fronts[TORCH])
    on_any = set(results.fronts[ORT]) | set(results.fronts[TORCH])
    assert ids(on_front=True) == on_any
    both = ids(device=ORT, on_front=True, min_accuracy=80, max_latency_ms=results.budget_ms)
    assert both == {
        i
        for i in results.fronts[ORT]
        if results.by_id(i).accuracy >= 80 and results.by_id(i).latency_ms(ORT) <= results.budget_ms
    }
    assert ids(min_accuracy=99.5) == set()


def test_subnet_detail_has_latencies_files_and_fronts(client: TestClient, results: Results) -> None:
    chosen = results.onnx_subnet
    row = results.by_id(chosen)
    detail = client.get(f"{API}/subnets/{chosen}").json()
    assert detail["arch_id"] == row.arch_id and detail["macs"] == row.macs
    assert detail["measured_accuracy"] == row.measured and detail["params"] == row.params
    assert detail["latencies"] == {
        device: {"predicted_ms": predicted, "measured_ms": measured}
        for device, (predicted, measured) in row.latency.items()
    }
    (artifact,) = detail["artifacts"]
    assert artifact["kind"] == "onnx" and artifact["format"] == "onnx"
    assert artifact["sha256"] == hashlib.sha256(results.onnx_bytes).hexdigest()
    assert artifact["size_bytes"] == len(results.onnx_bytes)
    expected_fronts = [
        {"device": device, "position": results.fronts[device].index(chosen)}
        for device in sorted(DEVICES)
        if chosen in results.fronts[device]
    ]
    assert detail["fronts"] == expected_fronts and expected_fronts
    listed = next(
        s for s in _subnets(client, results.job_id, limit=500)["data"] if s["id"] == chosen
    )
    assert {k: detail[k] for k in listed} == listed


# --- downloads ---------------------------------------------------------------------------------


def test_download_streams_the_exported_file_with_its_checksum(
    client: TestClient, results: Results, tmp_path: Path
) -> None:
    response = client.get(
        f"{API}/subnets/{results.onnx_subnet}/download", params={"format": "onnx"}
    )
    assert response.status_code == 200, response.text
    digest = hashlib.sha256(response.content).hexdigest()
    assert response.headers["x-checksum-sha256"] == digest
    assert response.content == results.onnx_bytes
    assert response.headers["content-type"] == "application/onnx"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="subnet-{results.onnx_subnet}.onnx"'
    downloaded = tmp_path / "subnet.onnx"
    downloaded.write_bytes(response.content)
    session = ort.InferenceSession(str(downloaded), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"x": np.ones((1, 16), dtype=np.float32)})
    assert logits.shape == (1, 10) and np.isfinite(logits).all()


def test_a_missing_file_of_an_unfinished_job_is_a_conflict(
    client: TestClient, results: Results, settings: Settings
) -> None:
    """No file and no succeeded job to export one from: 409 with the reason, never a 500."""
    engine = create_db_engine(settings.database_url)
    with create_session_factory(engine)() as session:
        job = results_read.get_job(session, results.job_id)
        job.state = "failed"
        job.error = "lost the disk"
        session.commit()
    engine.dispose()
    (
        settings.artifact_dir / "jobs" / str(results.job_id) / "exports" / "best" / "subnet.onnx"
    ).unlink()
    for fmt in ("onnx", "torchscript", "pytorch"):
        response = client.get(f"{API}/subnets/{results.onnx_subnet}/download?format={fmt}")
        assert response.status_code == 409, (fmt, response.text)
        assert f"POST /api/v1/subnets/{results.onnx_subnet}/exports" in response.json()["detail"]
        asked = client.post(
            f"{API}/subnets/{results.onnx_subnet}/exports", json={"format": fmt}, headers=AUTH
        )
        assert asked.status_code == 409, (fmt, asked.text)
        assert "failed" in asked.json()["detail"]


# --- specialise --------------------------------------------------------------------------------


def test_specialize_refuses_what_it_cannot_do(client: TestClient, results: Results) -> None:
    """Refusals that come before any search: wrong state, unknown device, no table."""
    url = f"{API}/jobs/{results.job_id}/specialize"
    queued = client.post(f"{API}/jobs", json=SPEC, headers=AUTH).json()
    early = client.post(
        f"{API}/jobs/{queued['id']}/specialize",
        json={"device": ORT, "latency_ms": 1.0},
        headers=AUTH,
    )
    assert early.status_code == 409 and "succeeded" in early.json()["detail"]
    unknown = client.post(url, json={"device": "pi4-ort", "latency_ms": 1.0}, headers=AUTH)
    assert unknown.status_code == 404 and "pi4-ort" in unknown.json()["detail"]
    # A registered device measured for another preset only: no latency to search with.
    upload = client.post(f"{API}/devices", json=_table(preset="imagenet"), headers=AUTH)
    assert upload.status_code == 201
    no_table = client.post(url, json={"device": "pi4-ort", "latency_ms": 1.0}, headers=AUTH)
    assert _field_errors(no_table, 422, "device") is None, no_table.text
    assert "no latency table for space 'bignas' preset 'tiny'" in no_table.text
    # A MACs budget needs no table; this job's supernet is not on disk (no training here).
    no_files = client.post(url, json={"device": "pi4-ort", "macs": 3_000_000}, headers=AUTH)
    assert no_files.status_code == 409 and "supernet" in no_files.json()["detail"]
    assert _subnets(client, results.job_id)["count"] == len(results.rows)


def test_an_export_on_demand_needs_the_trained_supernet(
    client: TestClient, results: Results, settings: Settings
) -> None:
    """Not exported yet, and the job's supernet is not on disk: the export request is a 409
    saying so, the download a 409 saying how to ask for the file, and nothing is stored."""
    other = next(r.id for r in results.rows if r.id != results.onnx_subnet)
    asked = client.post(f"{API}/subnets/{other}/exports", json={"format": "pytorch"}, headers=AUTH)
    assert asked.status_code == 409 and "supernet" in asked.json()["detail"]
    response = client.get(f"{API}/subnets/{other}/download", params={"format": "pytorch"})
    assert response.status_code == 409 and "exports" in response.json()["detail"]
    status = client.get(f"{API}/subnets/{other}/exports/pytorch").json()
    assert status["state"] == "not_requested"
    assert client.get(f"{API}/subnets/{other}").json()["artifacts"] == []


def test_an_anonymous_download_never_exports(
    client: TestClient, results: Results, settings: Settings
) -> None:
    """Reads are open: a GET of a file that does not exist writes nothing and queues nothing;
    a POST without a token is a 401; an existing file answers the POST with 200 ready."""
    other = next(r.id for r in results.rows if r.id != results.onnx_subnet)
    jobs = settings.artifact_dir / "jobs"
    before = sorted(p for p in jobs.rglob("*") if p.is_file())
    for _ in range(3):
        assert client.get(f"{API}/subnets/{other}/download").status_code == 409
    assert client.post(f"{API}/subnets/{other}/exports", json={"format": "onnx"}).status_code == 401
    assert sorted(p for p in jobs.rglob("*") if p.is_file()) == before
    assert client.get(f"{API}/subnets/{other}/exports/onnx").json()["state"] == "not_requested"
    assert client.get(f"{API}/subnets/{other}").json()["artifacts"] == []
    ready = client.post(
        f"{API}/subnets/{results.onnx_subnet}/exports", json={"format": "onnx"}, headers=AUTH
    )
    assert ready.status_code == 200 and ready.json()["state"] == "ready", ready.text
    download = client.get(ready.json()["download_url"])
    assert download.status_code == 200 and download.content == results.onnx_bytes


_BAD: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("GET", "/jobs/{job}/subnets?sort=size", {}, 422, "query.sort"),
    ("GET", "/jobs/{job}/subnets?order=up", {}, 422, "query.order"),
    ("GET", "/jobs/{job}/subnets?limit=0", {}, 422, "query.limit"),
    ("GET", "/jobs/{job}/subnets?limit=501", {}, 422, "query.limit"),
    ("GET", "/jobs/{job}/subnets?offset=-1", {}, 422, "query.offset"),
    ("GET", "/jobs/{job}/subnets?min_accuracy=101", {}, 422, "query.min_accuracy"),
    ("GET", "/jobs/{job}/subnets?max_macs=-5", {}, 422, "query.max_macs"),
    (
        "GET",
        "/jobs/{job}/subnets?max_latency_ms=nan&device=host-cpu-torch",
        {},
        422,
        "query.max_latency_ms",
    ),
    ("GET", "/jobs/{job}/subnets?on_front=maybe", {}, 422, "query.on_front"),
    ("GET", "/jobs/{job}/subnets?sort=latency", {}, 422, "query.device"),
    ("GET", "/jobs/{job}/subnets?max_latency_ms=3", {}, 422, "query.device"),
    ("GET", "/jobs/{job}/subnets?device=pi4-ort", {}, 422, "query.device"),
    ("GET", "/jobs/{job}/subnets?device=Not%20A%20Name", {}, 422, "query.device"),
    ("GET", "/jobs/abc/subnets", {}, 422, "path.job_id"),
    ("GET", "/jobs/999/subnets", {}, 404, None),
    ("GET", "/jobs/999/fronts", {}, 404, None),
    ("GET", "/jobs/999/fronts/host-cpu-torch", {}, 404, None),
    ("GET", "/jobs/{job}/fronts/Bad%20Name", {}, 422, "path.device"),
    ("GET", "/subnets/0", {}, 422, "path.subnet_id"),
    ("GET", f"/subnets/{2**40}", {}, 422, "path.subnet_id"),
    ("GET", "/subnets/99999", {}, 404, None),
    ("GET", "/subnets/99999/download", {}, 404, None),
    ("GET", "/subnets/{subnet}/download?format=tflite", {}, 422, "query.format"),
    ("POST", "/jobs/{job}/specialize", {"json": {}}, 422, "device"),
    ("POST", "/jobs/{job}/specialize", {"json": {"device": ORT}}, 422, "latency_ms"),
    (
        "POST",
        "/jobs/{job}/specialize",
        {"json": {"device": ORT, "latency_ms": 1, "macs": 9}},
        422,
        "latency_ms",
    ),
    (
        "POST",
        "/jobs/{job}/specialize",
        {"json": {"device": ORT, "latency_ms": -1}},
        422,
        "latency_ms",
    ),
    ("POST", "/jobs/{job}/specialize", {"json": {"device": ORT, "macs": 1.5}}, 422, "macs"),
    ("POST", "/jobs/{job}/specialize", {"json": {"device": "A B", "macs": 9}}, 422, "device"),
    ("POST", "/jobs/{job}/specialize", {"json": {"device": ORT, "macs": 9, "x": 1}}, 422, "x"),
    ("POST", "/jobs/{job}/specialize", {"content": b"{nope"}, 422, "body"),
    ("POST", "/jobs/999/specialize", {"json": {"device": ORT, "macs": 9}}, 404, None),
    ("PUT", "/subnets/{subnet}", {}, 405, None),
]


def test_bad_input_is_a_4xx_naming_the_field(client: TestClient, results: Results) -> None:
    failures = {}
    for method, template, kwargs, status, field in _BAD:
        url = API + template.format(job=results.job_id, subnet=results.onnx_subnet)
        headers = {**AUTH, "Content-Type": "application/json"}
        response = client.request(method, url, headers=headers, **kwargs)
        problem = _field_errors(response, status, field)
        if problem is not None:
            failures[f"{method} {url} {kwargs}"] = problem
    assert failures == {}
    sort = client.get(f"{API}/jobs/{results.job_id}/subnets?sort=size").json()["detail"][0]
    assert all(key in sort["msg"] for key in ("accuracy", "macs", "params", "latency"))
    device = client.get(f"{API}/jobs/{results.job_id}/subnets?device=pi4-ort").json()
    assert f"allowed values: {DEVICES}" in device["message"]


# --- auth --------------------------------------------------------------------------------------


def test_specialize_needs_a_token(client: TestClient, results: Results) -> None:
    url = f"{API}/jobs/{results.job_id}/specialize"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = client.post(url, json={"device": ORT, "latency_ms": 1.0}, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_result_reads_can_require_a_token(
    settings: Settings, results: Results, tmp_path: Path
) -> None:
    closed = _settings(settings.database_url, tmp_path, reads_require_token=True)
    urls = [
        f"{API}/jobs/{results.job_id}/fronts",
        f"{API}/jobs/{results.job_id}/fronts/{ORT}",
        f"{API}/jobs/{results.job_id}/subnets",
        f"{API}/subnets/{results.onnx_subnet}",
        f"{API}/subnets/{results.onnx_subnet}/download",
    ]
    with TestClient(create_app(closed)) as client:
        for url in urls:
            assert client.get(url).status_code == 401, url
            assert client.get(url, headers=AUTH).status_code == 200, url
    assert TOKEN in AUTH["Authorization"]


# --- storing what the API adds -----------------------------------------------------------------


def test_recording_a_subnet_twice_keeps_one_row_and_merges_latencies(
    settings: Settings, results: Results
) -> None:
    """What a specialisation stores: once per (job, arch_id); a known figure is never erased."""
    known = results.by_id(results.fronts[ORT][0])
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            record = SubnetRecord(
                arch_id=known.arch_id,
                arch={"space": "bignas"},
                resolution=32,
                macs=known.macs,
                params=known.params,
                predicted_accuracy=50.0,
                measured_accuracy=51.0,
                latencies={ORT: {"predicted_ms": 0.9}, "pi4-ort": {"predicted_ms": 3.2}},
            )
            assert results_read.record_subnet(session, results.job_id, record) == known.id
            again = results_read.record_subnet(session, results.job_id, record)
            assert again == known.id
            detail = results_read.get_subnet(session, known.id)
            new = record.model_copy(update={"arch_id": "f" * 16})
            added = results_read.record_subnet(session, results.job_id, new)
    finally:
        engine.dispose()
    assert detail.predicted_accuracy == known.predicted  # stored figures stay
    assert detail.measured_accuracy == (known.measured if known.measured is not None else 51.0)
    assert detail.latencies[ORT].predicted_ms == 0.9  # a new prediction replaces the old
    assert detail.latencies[ORT].measured_ms == known.latency[ORT][1]  # ... not a measurement
    assert detail.latencies["pi4-ort"].predicted_ms == 3.2 and added not in {
        r.id for r in results.rows
    }


def test_a_subnet_measured_later_joins_the_fronts_it_beats(
    settings: Settings, results: Results, client: TestClient
) -> None:
    """A specialisation stores a measured subnet; the job's fronts are recomputed over every
    measured subnet, so the newcomer replaces the members it dominates and the pick follows."""
    from service.store.results import refresh_fronts

    best = results.by_id(results.fronts[ORT][0])
    fastest = min(results.rows, key=lambda r: r.latency_ms(ORT) or 1e9)
    record = SubnetRecord(
        arch_id="a" * 16,
        arch={"space": "bignas"},
        resolution=32,
        macs=fastest.macs,
        params=fastest.params,
        predicted_accuracy=90.0,
        measured_accuracy=best.measured + 0.5,  # type: ignore[operator]
        latencies={ORT: {"predicted_ms": 0.2, "measured_ms": 0.2}},  # faster than any
    )
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            added = results_read.record_subnet(session, results.job_id, record)
            refresh_fronts(session, results.job_id)
    finally:
        engine.dispose()
    front = client.get(f"{API}/jobs/{results.job_id}/fronts/{ORT}").json()
    # it beats every member on both axes: the front is that subnet alone, and it is the pick
    assert [m["id"] for m in front["members"]] == [added]
    assert front["best_subnet_id"] == added
    # the torch front is unchanged: the newcomer has no latency there
    torch = client.get(f"{API}/jobs/{results.job_id}/fronts/{TORCH}").json()
    assert [m["id"] for m in torch["members"]] == results.fronts[TORCH]
    detail = client.get(f"{API}/subnets/{added}").json()
    assert detail["fronts"] == [{"device": ORT, "position": 0}]


def test_exports_run_through_one_bounded_queue(settings: Settings, results: Results) -> None:
    """Requests for the same file coalesce; one more than the bound is refused (the route makes
    that a 503 with Retry-After); a failed export says why and frees its place."""
    import threading

    from service.exports import ExportQueue, QueueFullError

    engine = create_db_engine(settings.database_url)
    factory = create_session_factory(engine)
    gate = threading.Event()

    def sessions() -> Session:  # the worker's first session waits: all stay pending
        gate.wait(30)
        return factory()

    exports = ExportQueue(settings, sessions, max_pending=3)
    ids = [r.id for r in results.rows if r.id != results.onnx_subnet][:4]
    tasks = [exports.request(i, "onnx", "inherited") for i in ids[:3]]
    assert exports.request(ids[0], "onnx", "inherited") is tasks[0]  # coalesced, not queued twice
    with pytest.raises(QueueFullError):
        exports.request(ids[3], "onnx", "inherited")
    assert [exports.position(t) for t in tasks] in ([0, 1, 2], [0, 0, 1])  # first may run
    gate.set()
    # this job's supernet is not on disk: each export fails with the reason, and the place frees
    deadline = time.monotonic() + 30
    while any(t.state != "failed" for t in tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.state for t in tasks] == ["failed"] * 3
    assert all("supernet" in (t.error or "") for t in tasks), [t.error for t in tasks]
    assert exports.request(ids[3], "onnx", "inherited").state in ("queued", "running")
    engine.dispose()
