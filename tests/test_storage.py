"""Artifact storage and worker placement: the pieces a multi-node deployment rests on
(tests/test_multinode.py runs them together on two Ray nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.events import LogLine
from workers.jobs import EventLog, run_job, uses_ray_train
from workers.spec import JobRequest, SearchSettings, WorkerPlacement
from workers.storage import ArtifactStore, StoreNotSharedError
from workers.training import TrainJob, _scaling


def test_store_addresses_files_by_relative_path_and_refuses_escapes(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "var")
    with store.open("jobs/1/exports/a.onnx", "wb") as handle:
        handle.write(b"onnx")
    assert store.exists("jobs/1/exports/a.onnx") and not store.exists("jobs/1/none.onnx")
    assert store.read_bytes("jobs/1/exports/a.onnx") == b"onnx"
    assert store.relative(tmp_path / "var" / "jobs" / "1" / "exports" / "a.onnx") == (
        "jobs/1/exports/a.onnx"
    )
    for escape in ("../secret", "/etc/passwd", "jobs/../../x"):
        assert not store.exists(escape)
        with pytest.raises(ValueError, match="outside the artifact directory"):
            store.path(escape)
    with pytest.raises(ValueError, match="outside the artifact directory"):
        store.relative(tmp_path / "elsewhere")
    store.remove_tree("jobs/1")
    assert not (tmp_path / "var" / "jobs" / "1").exists()


def test_store_marker_tells_a_shared_directory_from_another(tmp_path: Path) -> None:
    shared = ArtifactStore(tmp_path / "shared")
    store_id = shared.ensure_marker()
    assert shared.ensure_marker() == store_id  # written once
    ArtifactStore(tmp_path / "shared").check_marker(store_id)  # another node, same mount
    with pytest.raises(StoreNotSharedError, match="same shared directory"):
        ArtifactStore(tmp_path / "node-local").check_marker(store_id)


def test_a_runner_that_does_not_see_the_store_fails_before_any_stage(tmp_path: Path) -> None:
    request = JobRequest(
        job_id=1,
        attempt=1,
        space="bignas",
        preset="tiny",
        dataset={"kind": "synthetic"},
        training={"epochs": 1},
        search=SearchSettings(),
        devices=["host-cpu-torch"],
        num_workers=2,
        artifact_dir=tmp_path / "node-local",
        data_root=tmp_path,
        store_id=ArtifactStore(tmp_path / "shared").ensure_marker(),
    )
    events = EventLog()
    outcome = run_job(request, events)
    assert outcome.state == "failed" and "NAS_ARTIFACT_DIR" in (outcome.error or "")
    assert all(isinstance(e, LogLine) for e in events.after(0))  # no stage started


def test_placement_goes_to_ray_train_as_asked() -> None:
    spread = WorkerPlacement(strategy="SPREAD", resources_per_worker={"node_b": 1})
    job = TrainJob(space="bignas", num_workers=2, placement=spread)
    assert _scaling(job, cluster_gpus=0) == {
        "num_workers": 2,
        "use_gpu": False,
        "resources_per_worker": {"CPU": 1.0, "node_b": 1},
        "placement_strategy": "SPREAD",
    }
    # GPUs: when asked for, when the cluster has one per worker, never when refused
    gpu = TrainJob(space="bignas", num_workers=2, placement={"resources_per_worker": {"GPU": 1}})
    assert _scaling(gpu, cluster_gpus=0)["use_gpu"] is True
    auto = TrainJob(space="bignas", num_workers=2)
    assert _scaling(auto, cluster_gpus=1)["use_gpu"] is False
    assert _scaling(auto, cluster_gpus=2)["resources_per_worker"] == {"CPU": 1.0, "GPU": 1.0}
    refused = gpu.model_copy(update={"use_gpu": False})
    assert _scaling(refused, cluster_gpus=8)["resources_per_worker"] == {"CPU": 1.0}


def test_one_worker_trains_on_ray_train_only_when_a_placement_asks_for_it() -> None:
    def request(**changes: object) -> JobRequest:
        values = {
            "job_id": 1,
            "attempt": 1,
            "space": "bignas",
            "preset": "tiny",
            "dataset": {"kind": "synthetic"},
            "training": {"epochs": 1},
            "search": {},
            "devices": ["host-cpu-torch"],
            "num_workers": 1,
            "artifact_dir": Path("/tmp/a"),
            "data_root": Path("/tmp/d"),
            **changes,
        }
        return JobRequest.model_validate(values)

    assert not uses_ray_train(request())
    assert uses_ray_train(request(num_workers=2))
    assert uses_ray_train(request(placement={"resources_per_worker": {"GPU": 1}}))
