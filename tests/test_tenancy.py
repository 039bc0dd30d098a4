"""Tokens with names and roles: a user token acts on its own jobs, devices and exports and
reads what reads allow; an admin token acts on everything; a bare token string (the older
form of NAS_API_TOKENS) is an admin named by its fingerprint, so what it owned stays its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _results import fill_results
from fastapi.testclient import TestClient
from test_api_jobs import SPEC, _table

from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import Job
from service.settings import ApiToken, Settings, fingerprint

API = "/api/v1"
TOKENS = {
    "alice": "alice-token-0123456789abcdef",
    "bob": "bob-token-0123456789abcdefgh",
    "root": "root-token-0123456789abcdefg",
}
LEGACY = "legacy-token-0123456789abcdef"


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.get(name, LEGACY)}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    upgrade_database(url)
    (tmp_path / "data").mkdir()
    return Settings(
        database_url=url,
        artifact_dir=tmp_path / "var",
        data_root=tmp_path / "data",
        dispatcher_enabled=False,
        api_tokens=[
            {"name": "alice", "token": TOKENS["alice"], "role": "user"},
            {"name": "bob", "token": TOKENS["bob"]},  # role: user by default
            {"name": "root", "token": TOKENS["root"], "role": "admin"},
            LEGACY,
        ],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _submit(client: TestClient, who: str) -> dict[str, Any]:
    response = client.post(f"{API}/jobs", json={**SPEC, "name": who}, headers=_as(who))
    assert response.status_code == 201, response.text
    return response.json()


def test_settings_name_tokens_and_keep_bare_ones_as_admins() -> None:
    settings = Settings(api_tokens=[LEGACY, {"name": "eve", "token": TOKENS["alice"]}])
    assert settings.api_tokens == [
        ApiToken(name=fingerprint(LEGACY), token=LEGACY, role="admin"),
        ApiToken(name="eve", token=TOKENS["alice"], role="user"),
    ]
    assert TOKENS["alice"] not in repr(settings.api_tokens)
    for bad, message in (
        (
            [{"name": "a", "token": TOKENS["alice"]}, {"name": "a", "token": TOKENS["bob"]}],
            "unique",
        ),
        (
            [{"name": "a", "token": TOKENS["alice"]}, {"name": "b", "token": TOKENS["alice"]}],
            "twice",
        ),
        ([{"name": "a", "token": TOKENS["alice"], "role": "owner"}], "role"),
        ([{"name": "a b", "token": TOKENS["alice"]}], "name"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings(api_tokens=bad)


def test_a_user_token_cancels_and_deletes_only_its_own_jobs(client: TestClient) -> None:
    mine, theirs = _submit(client, "alice"), _submit(client, "bob")
    assert mine["owner"] == "alice" and theirs["owner"] == "bob"
    refused = client.post(f"{API}/jobs/{mine['id']}/cancel", headers=_as("bob"))
    assert refused.status_code == 403, refused.text
    assert "belongs to 'alice'" in refused.json()["detail"]
    assert client.delete(f"{API}/jobs/{mine['id']}", headers=_as("bob")).status_code == 403
    # reads stay open to every token (and to none, as configured here)
    assert client.get(f"{API}/jobs/{mine['id']}", headers=_as("bob")).status_code == 200
    assert client.get(f"{API}/jobs/{mine['id']}").json()["state"] == "queued"
    assert client.post(f"{API}/jobs/{mine['id']}/cancel", headers=_as("alice")).status_code in (
        200,
        202,
    )
    assert client.delete(f"{API}/jobs/{mine['id']}", headers=_as("alice")).status_code == 204
    # an admin acts on anyone's job; so does a bare (unnamed) token
    assert client.post(f"{API}/jobs/{theirs['id']}/cancel", headers=_as("root")).status_code in (
        200,
        202,
    )
    other = _submit(client, "bob")
    assert client.post(f"{API}/jobs/{other['id']}/cancel", headers=_as("legacy")).status_code in (
        200,
        202,
    )
    legacy = _submit(client, "legacy")
    assert legacy["owner"] == fingerprint(LEGACY)


def test_a_user_token_adds_tables_only_to_its_own_devices(client: TestClient) -> None:
    created = client.post(
        f"{API}/devices/pi4-ort/latency-tables", json=_table(), headers=_as("alice")
    )
    assert created.status_code == 201, created.text
    again = _table(median_ms=0.2)
    refused = client.post(f"{API}/devices/pi4-ort/latency-tables", json=again, headers=_as("bob"))
    assert refused.status_code == 403 and "belongs to 'alice'" in refused.json()["detail"]
    for who in ("alice", "root"):
        answer = client.post(f"{API}/devices/pi4-ort/latency-tables", json=again, headers=_as(who))
        assert answer.status_code in (200, 201), (who, answer.text)


def test_exports_and_specialisation_act_on_the_owners_job_only(
    client: TestClient, settings: Settings
) -> None:
    results = fill_results(settings)
    engine = create_db_engine(settings.database_url)
    with create_session_factory(engine)() as session:
        session.get(Job, results.job_id).owner = "alice"  # type: ignore[union-attr]
        session.commit()
    engine.dispose()
    subnet = next(r.id for r in results.rows if r.id != results.onnx_subnet)
    export = {"format": "onnx"}
    bob = client.post(f"{API}/subnets/{subnet}/exports", json=export, headers=_as("bob"))
    assert bob.status_code == 403, bob.text
    # the owner passes the check and meets the next one: this job has no supernet on disk
    alice = client.post(f"{API}/subnets/{subnet}/exports", json=export, headers=_as("alice"))
    assert alice.status_code == 409 and "supernet" in alice.json()["detail"]
    budget = {"device": "host-cpu-torch", "macs": 3_000_000}
    url = f"{API}/jobs/{results.job_id}/specialize"
    assert client.post(url, json=budget, headers=_as("bob")).status_code == 403
    assert client.post(url, json=budget, headers=_as("root")).status_code == 409  # no supernet
