"""No request holds a database transaction across long work (issue 30, finding 3).

A specialise request for a built-in host device takes its latency table first, which means
timing networks for seconds (re-anchoring a stale table) to minutes (profiling one). It used to
do so inside a SQLite write transaction, holding the database-wide write lock throughout: every
other write waited out the busy timeout and answered 503. Here a real server specialises a
trained job whose cached host table has no anchor yet; while that table is re-anchored, a
latency-table upload and a job submission must each answer within a second, and the
specialisation must still succeed.

SQLite only: its write lock is database-wide (``service.db``), which is what turned one slow
request into everyone's outage; PostgreSQL locks rows.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from _finished_job import TRAINING
from _serving import serving
from test_api_jobs import AUTH, SPEC, _settings, _table
from test_latency_anchor import FAST_PLAN

from nas.data import DatasetSpec, load_dataset
from nas.hardware import builtin_devices
from nas.hardware.profile import profile
from nas.predictors import AccuracyDataset, SupernetAccuracy, make_predictor, predictor_to_bytes
from nas.predictors.dataset import measure_subnets, stratified_subnets
from nas.training import SupernetTrainer, load_checkpoint
from service.api.schemas.jobs import JobCreate
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.settings import Settings
from service.store.jobs import create_job
from workers.spec import job_dir
from workers.tables import host_table_path
from workers.trained import build_space, checkpoint_path, predictor_path

API = "/api/v1"
TORCH = "host-cpu-torch"
#: The space with the fewest blocks (its table profiles in seconds), on a few synthetic images.
SPACE, PRESET = "single_path", "tiny"
DATASET = DatasetSpec(kind="synthetic", num_samples=200, num_classes=10)
#: What the other writes may take while the specialisation works.
PROMPT_S = 1.0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'var' / 'nas.db'}"
    upgrade_database(url)
    (tmp_path / "data").mkdir()
    return _settings(url, tmp_path)


def _succeeded_job(settings: Settings) -> int:
    """A job stored as the API stores one, then marked succeeded as the controller would."""
    body = JobCreate.model_validate(
        {
            **SPEC,
            "name": "single_path to specialise",
            "space": SPACE,
            "preset": PRESET,
            "dataset": DATASET.model_dump(mode="json", exclude_defaults=True),
            "training": TRAINING.model_dump(mode="json"),
            "devices": [TORCH],
        }
    )
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            job, _ = create_job(session, settings, body, owner="local")
            job.state, job.progress = "succeeded", 100.0
            job.finished_at = datetime.now(UTC)
            session.commit()
            return job.id
    finally:
        engine.dispose()


def _train(directory: Path, settings: Settings) -> Any:
    """The files a finished job leaves for specialisation: a supernet checkpoint (one real
    training step, checkpointed when the trainer is stopped) and an accuracy predictor fitted
    on subnets measured from it, as the building_predictor stage does; the job's space."""
    data = load_dataset(DATASET, data_root=settings.data_root)
    space = build_space(SPACE, PRESET, data)
    SupernetTrainer(
        space,
        data,
        TRAINING,
        checkpoint_dir=checkpoint_path(directory).parent,
        step_hooks=[lambda trainer: trainer.request_stop()],
    ).fit()
    state = load_checkpoint(checkpoint_path(directory))
    accuracy = SupernetAccuracy.from_checkpoint(space, data, state, split="holdout")
    records = measure_subnets(
        space, stratified_subnets(space, 3, np.random.default_rng(0)), accuracy
    )
    x, y = AccuracyDataset(space=SPACE, preset=PRESET, split="holdout", records=records).arrays(
        space
    )
    path = predictor_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(predictor_to_bytes(make_predictor("ridge").fit(x, y)))
    return space


def _unanchored_host_table(settings: Settings, space: Any) -> Path:
    """This host's torch table for the job's space, profiled (short plan) and cached where the
    API looks, but never anchored: the first request that takes it times anchor networks."""
    out = host_table_path(
        settings.artifact_dir, TORCH, SPACE, PRESET, space.num_classes, space.in_channels
    )
    table = profile(space, builtin_devices()[TORCH], FAST_PLAN, out)
    assert table.complete and table.anchor is None
    return out


def _timed_post(base: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    with httpx.Client(base_url=base, headers=AUTH, timeout=30.0) as client:
        response = client.post(path, json=body)
    return response, time.monotonic() - started


def test_writes_are_served_while_a_specialisation_works(settings: Settings) -> None:
    job_id = _succeeded_job(settings)
    space = _train(job_dir(settings.artifact_dir, job_id), settings)
    table_path = _unanchored_host_table(settings, space)
    # host_table holds a lock file beside the table it profiles or re-anchors: once one is
    # there, the long work has begun
    tables = table_path.parent
    macs = int(space.complexity_batch([space.reference_archs()["max"]])[0][0])  # any subnet

    with serving(settings) as base:
        done = threading.Event()
        answer: list[tuple[httpx.Response, float]] = []

        def specialise() -> None:
            try:
                answer.append(
                    _timed_post(
                        base, f"{API}/jobs/{job_id}/specialize", {"device": TORCH, "macs": macs}
                    )
                )
            finally:
                done.set()

        threading.Thread(target=specialise, daemon=True).start()
        deadline = time.monotonic() + 30
        while not any(tables.glob(".*.lock")):
            assert not done.is_set(), f"specialise answered before taking a table: {answer}"
            assert time.monotonic() < deadline, "specialise never began taking a table"
            time.sleep(0.02)

        with ThreadPoolExecutor(max_workers=2) as pool:
            upload = pool.submit(
                _timed_post, base, f"{API}/devices/pi4-ort/latency-tables", _table()
            )
            submission = pool.submit(_timed_post, base, f"{API}/jobs", SPEC)
            writes = {"upload": upload.result(), "submission": submission.result()}
        assert not done.is_set(), "the specialisation ended before the other writes answered"
        for what, (response, seconds) in writes.items():
            assert response.status_code == 201, (what, response.status_code, response.text)
            assert seconds < PROMPT_S, f"the {what} took {seconds:.2f} s during a specialise"

        assert done.wait(60), "specialise did not answer"
        (response, seconds) = answer[0]
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["subnet"]["job_id"] == job_id and found["subnet"]["macs"] <= macs
        # the cached table was re-anchored, not another one profiled
        assert sorted(p.name for p in tables.glob("*.json")) == [table_path.name]
        stored = httpx.get(f"{base}{API}/subnets/{found['subnet']['id']}", timeout=10.0)
        assert stored.status_code == 200 and stored.json()["arch_id"] == found["subnet"]["arch_id"]
