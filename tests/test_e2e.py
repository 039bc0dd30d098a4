"""The product end to end through HTTP, on a real local Ray and a real SQLite database (what
``make run`` uses; a whole job on PostgreSQL is ``test_faults``' restart test, and the storage
layer runs on both in ``test_storage`` and the API tests): register a device, submit a tiny
job, watch it succeed, read a non-empty Pareto front per device, specialize for a new budget
in seconds, download the ONNX file and run it with onnxruntime on a val image (and check it
against the downloaded PyTorch package)."""

from __future__ import annotations

import hashlib
import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _jobs import exported, wait_finished
from fastapi.testclient import TestClient

import search_spaces
from nas.data import DatasetSpec, load_dataset, resize_batch
from nas.hardware import LatencyPredictor
from nas.hardware.device import Device
from service.app import create_app
from service.migrate import upgrade_database
from service.settings import Settings

TOKEN = "e2e-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOST, BOARD = "host-cpu-torch", "board"
SPACE = "ofa_mbv3"


@pytest.fixture(scope="module")
def host_tables(profiled_host_tables: Callable[..., Path]) -> Path:
    """This host's torch table for the tiny space, profiled once for the run."""
    return profiled_host_tables(SPACE, num_classes=10, in_channels=3)


def _board_table(host_tables: Path) -> dict[str, Any]:
    """A registered device's table as `nas device profile` would upload it (measured here)."""
    from nas.hardware import read_table

    (path,) = host_tables.glob(f"{HOST}--*.json")
    board = read_table(path).model_copy(
        update={"device": Device(name=BOARD, runtime="torch", hardware="the CI machine")}
    )
    return board.model_dump(mode="json")


def _spec(host_tables: Path) -> dict[str, Any]:
    from nas.hardware import read_table

    space = search_spaces.get(SPACE, preset="tiny", num_classes=10, in_channels=3)
    low, high = space.reference_archs()["min"], space.reference_archs()["max"]
    (path,) = host_tables.glob(f"{HOST}--*.json")
    fast, slow = LatencyPredictor(read_table(path), space).predict([low, high])
    return {
        "name": "e2e tiny ofa",
        "space": SPACE,
        "dataset": {"kind": "digits"},
        "training": {
            "epochs": 1,
            "batch_size": 32,
            "warmup_epochs": 0,
            "schedule": "single_stage",
            "sampler": "uniform",
            "bn_recalibration_batches": 2,
        },
        "search": {
            "population": 12,
            "generations": 8,
            "evaluations": 12,
            "budgets": {HOST: {"latency_ms": float(fast + 0.5 * (slow - fast))}},
        },
        "finetune": {"subnets": 1, "samples": 1, "max_epochs": 1},
        "devices": [HOST, BOARD],
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_search_specialize_download_and_run(
    ray_local: None, host_tables: Path, database_url: str, tmp_path: Path
) -> None:
    import onnxruntime as ort
    import torch

    from nas.export import load_subnet

    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=database_url,
        artifact_dir=tmp_path / "var",
        data_root=tmp_path / "data",
        api_tokens=[TOKEN],
        dispatcher_enabled=True,
    )
    shutil.copytree(host_tables, settings.artifact_dir / "tables")  # no second profiling
    spec = _spec(host_tables)
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/devices", json=_board_table(host_tables)).status_code == 401
        created = client.post("/api/v1/devices", json=_board_table(host_tables), headers=AUTH)
        assert created.status_code == 201, created.text
        submitted = client.post("/api/v1/jobs", json=spec, headers=AUTH)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"].endswith(f"/api/v1/jobs/{job_id}")

        job = wait_finished(client, job_id)
        assert job["state"] == "succeeded", job["error"]
        assert [s["name"] for s in job["stages"]] == [
            "training",
            "building_predictor",
            "searching",
            "finetuning",
            "exporting",
        ]

        fronts = client.get(f"/api/v1/jobs/{job_id}/fronts").json()["data"]
        assert {f["device"] for f in fronts} == {HOST, BOARD}
        budget_ms = spec["search"]["budgets"][HOST]["latency_ms"]
        for front in fronts:
            assert front["members"], f"empty front on {front['device']}"
            assert all(m["latencies"][front["device"]]["predicted_ms"] for m in front["members"])
            assert all(m["measured_accuracy"] is not None for m in front["members"])
        (host_front,) = [f for f in fronts if f["device"] == HOST]
        best = next(m for m in host_front["members"] if m["id"] == host_front["best_subnet_id"])
        assert best["latencies"][HOST]["measured_ms"] <= budget_ms  # timed whole, not predicted
        # stage two fine-tuned the best: both figures, measured, and its weights to download
        assert best["finetuned_accuracy"] is not None and best["finetune"]["trials"] == 1
        weights = client.get(
            f"/api/v1/subnets/{best['id']}/download", params={"format": "finetuned"}
        )
        assert weights.status_code == 200, weights.text
        assert weights.headers["x-checksum-sha256"] == hashlib.sha256(weights.content).hexdigest()

        # a new budget on the other device, from the trained supernet: no retraining
        (board_front,) = [f for f in fronts if f["device"] == BOARD]
        new_budget = float(
            np.median([m["latencies"][BOARD]["predicted_ms"] for m in board_front["members"]])
        )
        started = time.monotonic()
        answer = client.post(
            f"/api/v1/jobs/{job_id}/specialize",
            json={"device": BOARD, "latency_ms": new_budget},
            headers=AUTH,
        )
        seconds = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert seconds < 5.0, f"specialize took {seconds:.1f} s"
        found = answer.json()["subnet"]
        # the board is not this host: its latency can only be predicted, and the answer says so
        assert answer.json()["figures"] == {"accuracy": "measured", "latency_ms": "predicted"}
        assert found["latencies"][BOARD]["predicted_ms"] <= new_budget * (1 + 1e-9)
        assert found["measured_accuracy"] is not None

        # a subnet the job did not export: a GET is a 409 naming the POST; asked for with the
        # token, the export is queued, made from the supernet, then served
        listed = client.get(f"/api/v1/jobs/{job_id}/subnets", params={"limit": 500}).json()
        plain = next(
            s
            for s in listed["data"]
            if not client.get(f"/api/v1/subnets/{s['id']}").json()["artifacts"]
        )
        url = f"/api/v1/subnets/{plain['id']}/download"
        absent = client.get(url, params={"format": "onnx"})
        assert absent.status_code == 409 and "/exports" in absent.json()["detail"]
        for fmt in ("onnx", "pytorch"):
            assert exported(client, plain["id"], fmt, AUTH)["state"] == "ready"
        onnx = client.get(url, params={"format": "onnx"})
        assert onnx.status_code == 200, onnx.text
        assert onnx.headers["x-checksum-sha256"] == hashlib.sha256(onnx.content).hexdigest()
        package = client.get(url, params={"format": "pytorch"})
        assert package.status_code == 200, package.text

    data = load_dataset(DatasetSpec(kind="digits"), data_root=tmp_path / "data")
    image, label = data.val[0]
    x = resize_batch(image[None], plain["resolution"])
    session = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert logits.shape == (1, 10) and np.isfinite(logits).all()
    with torch.no_grad():
        expected = load_subnet(io.BytesIO(package.content))(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    assert 0 <= int(logits.argmax()) < 10 and 0 <= label < 10
