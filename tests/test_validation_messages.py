"""Every 422 of POST /api/v1/jobs names the field (its full dotted path), the value given and
why, and what can only fail at run time (an empty dataset folder, too few epochs for the
space's schedule, a path the OS cannot resolve) is refused at submission; through HTTP and
through ``nas submit`` against a live server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _serving import serving
from fastapi.testclient import TestClient
from test_api_jobs import AUTH, SPEC, TOKEN, _settings
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app as cli
from service.migrate import upgrade_database
from service.settings import Settings

TORCH = "host-cpu-torch"

# (changes to SPEC, field, the value as the message shows it, words of the reason)
BAD_SPECS: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "NaN budget": (
        {"devices": [TORCH], "search": {"budgets": {TORCH: float("nan")}}},
        f"search.budgets.{TORCH}",
        "NaN",
        "is not a finite number",
    ),
    "NaN latency budget": (
        {"devices": [TORCH], "search": {"budgets": {TORCH: {"latency_ms": float("nan")}}}},
        f"search.budgets.{TORCH}.latency_ms",
        "NaN",
        "is not a finite number",
    ),
    "infinite latency budget": (
        {"devices": [TORCH], "search": {"budgets": {TORCH: {"latency_ms": float("inf")}}}},
        f"search.budgets.{TORCH}.latency_ms",
        "Infinity",
        "is not a finite number",
    ),
    "NaN resource": (
        {"placement": {"resources_per_worker": {"CPU": float("nan")}}},
        "placement.resources_per_worker.CPU",
        "NaN",
        "is not a finite number",
    ),
    "infinity in a field bounded below only": (
        {"training": {**SPEC["training"], "warmup_epochs": float("inf")}},
        "training.warmup_epochs",
        "Infinity",
        "is not a finite number",
    ),
    "unknown budget device": (
        {"search": {"budgets": {"phone": {"latency_ms": 3}}}},
        "search.budgets.phone",
        "'phone'",
        "unknown device 'phone'; known devices: ['host-cpu-onnxruntime']",
    ),
    "NUL byte in root": (
        {"dataset": {"kind": "imagefolder", "root": "images\x00/train"}},
        "dataset.root",
        "'images\\x00/train'",
        "NUL byte",
    ),
    "component over NAME_MAX": (
        {"dataset": {"kind": "imagefolder", "root": "images/" + "c" * 300}},
        "dataset.root",
        "300 characters",
        "at most 255",
    ),
    "path over PATH_MAX": (
        {"dataset": {"kind": "imagefolder", "root": "/".join(["p" * 99] * 50) + "/x"}},
        "dataset.root",
        "(5001 characters)",
        "at most 4096 characters",
    ),
    "symlink loop": (
        {"dataset": {"kind": "imagefolder", "root": "loop/train"}},
        "dataset.root",
        "'loop/train'",
        "symlink loop",
    ),
    "empty imagefolder": (
        {"dataset": {"kind": "imagefolder", "root": "empty"}},
        "dataset.root",
        "'empty'",
        "needs at least two class folders holding .png/.jpg images",
    ),
    "empty cifar10 folder": (
        {"dataset": {"kind": "cifar10", "root": "empty"}},
        "dataset.root",
        "'empty'",
        "missing ['data_batch_1'",
    ),
    "ofa_mbv3 with 1 epoch": (
        {"space": "ofa_mbv3"},
        "training.epochs",
        "got 1",
        "4 phases need at least 4 epochs",
    ),
    "progressive shrinking asked for with 2 epochs": (
        {"training": {**SPEC["training"], "epochs": 2, "schedule": "progressive_shrinking"}},
        "training.epochs",
        "got 2",
        "4 phases need at least 4 epochs",
    ),
    # kinds of errors that named their field before, and now the value too
    "epochs below the bound": (
        {"training": {"epochs": 0}},
        "training.epochs",
        "(got 0)",
        "greater than or equal to 1",
    ),
    "population above the bound": (
        {"search": {"population": 10**9}},
        "search.population",
        "(got 1000000000)",
        "less than or equal to 10000",
    ),
    "unknown dataset kind": (
        {"dataset": {"kind": "mnist"}},
        "dataset.kind",
        "(got 'mnist')",
        "'digits', 'cifar10', 'cifar100', 'imagefolder', 'synthetic', 'idx' or 'fashion_mnist'",
    ),
    "device listed twice": (
        {"devices": [TORCH, TORCH]},
        "devices",
        f"'{TORCH}'",
        "listed twice",
    ),
    "budget with both kinds": (
        {"search": {"budgets": {"host-cpu-onnxruntime": {"latency_ms": 3, "macs": 5}}}},
        "search.budgets.host-cpu-onnxruntime",
        "latency_ms 3.0, macs 5",
        "exactly one of latency_ms or macs",
    ),
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One SQLite service for the module (no case stores a job); its data root holds an empty
    folder and a symlink that points at itself."""
    root = tmp_path_factory.mktemp("validation")
    url = f"sqlite:///{root / 'var' / 'nas.db'}"
    upgrade_database(url)
    data = root / "data"
    data.mkdir()
    (data / "empty").mkdir()
    (data / "loop").symlink_to(data / "loop")
    return _settings(url, root)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_spec_gets_a_422_naming_field_value_and_reason(client: TestClient, case: str) -> None:
    changes, field, value, reason = BAD_SPECS[case]
    body = json.dumps({**SPEC, **changes})  # allow_nan: NaN and Infinity as Python's JSON spells
    response = client.post(
        "/api/v1/jobs", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    (error,) = response.json()["detail"]
    assert error["field"] == field, error
    assert value in error["msg"] and reason in error["msg"], error["msg"]
    assert f"{field}: {error['msg']}" in response.json()["message"]


def test_nas_submit_prints_field_value_and_reason(settings: Settings, tmp_path: Path) -> None:
    """``nas submit`` of a bad job file against a live server: one line, exit 2, no traceback."""
    # (changes to SPEC, field, value, reason)
    files: dict[str, tuple[dict[str, Any], str, str, str]] = {
        "budget.yaml": (
            {"search": {"budgets": {"phone": {"latency_ms": 3}}}},
            "search.budgets.phone",
            "'phone'",
            "unknown device",
        ),
        "epochs.yaml": (
            {"space": "ofa_mbv3"},
            "training.epochs",
            "got 1",
            "4 phases need at least 4 epochs",
        ),
    }
    env = {"NAS_TOKEN": TOKEN, "COLUMNS": "200"}
    with serving(settings) as url:
        for name, (changes, field, value, reason) in files.items():
            path = tmp_path / name
            path.write_text(yaml.safe_dump({**SPEC, **changes}))
            result = CliRunner().invoke(cli, ["submit", str(path)], env={**env, "NAS_URL": url})
            output = " ".join(result.output.split())  # rich wraps long lines
            assert result.exit_code == 2, result.output
            assert f"{field}:" in output and value in output and reason in output, output
            assert "HTTP 422" in output and "Traceback" not in output
