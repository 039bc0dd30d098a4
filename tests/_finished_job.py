"""One whole ofa_mbv3 job (every stage, in-process on a local Ray) for the session: the
modules that check a finished job's files, results and stages share it rather than each
training and searching their own (``tests/conftest.py``'s ``finished_job``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import search_spaces
from nas.data import DatasetSpec
from nas.hardware import LatencyPredictor, write_table
from nas.hardware.device import Device
from nas.training import TrainingConfig
from workers.events import JobOutcome
from workers.jobs import EventLog, run_job
from workers.results import RESULTS_NAME, JobResults, read_results
from workers.spec import FinetuneSettings, JobRequest, SearchSettings
from workers.specialize import host_table

HOST, BOARD = "host-cpu-torch", "board"
DATASET = DatasetSpec(kind="digits")
TRAINING = TrainingConfig(
    epochs=1,
    batch_size=32,
    warmup_epochs=0.0,
    bn_recalibration_batches=2,
    schedule="single_stage",
    sampler="uniform",
)


@dataclass
class Finished:
    request: JobRequest
    outcome: JobOutcome
    events: list[Any]
    results: JobResults
    space: Any
    tables: dict[str, Any]


def run_finished_job(root: Path, host_tables: Path) -> Finished:
    """A job on a built-in host device (latency budget) and a registered one (this host's
    table under another name; MACs budget), stage two at its smallest (one subnet per device,
    one recipe: tests/test_finetuning.py covers recipes, ASHA and resuming)."""
    (root / "data").mkdir()
    space = search_spaces.get("ofa_mbv3", preset="tiny")
    shutil.copytree(host_tables, root / "var" / "tables")
    host = host_table(root / "var", HOST, "ofa_mbv3", "tiny")
    # a registered device: the controller copies its uploaded table into the job directory
    board = host.model_copy(
        update={"device": Device(name=BOARD, runtime="torch", hardware="measured on this host")}
    )
    refs = space.reference_archs()
    low, high = LatencyPredictor(host, space).predict([refs["min"], refs["max"]])
    macs_low, macs_high = space.complexity_batch([refs["min"], refs["max"]])[0]
    search = SearchSettings(
        population=12,
        generations=8,
        evaluations=12,
        budgets={
            HOST: {"latency_ms": float(low + 0.4 * (high - low))},
            BOARD: {"macs": int(macs_low + 0.5 * (macs_high - macs_low))},
        },
    )
    request = JobRequest(
        job_id=1,
        attempt=1,
        space="ofa_mbv3",
        preset="tiny",
        dataset=DATASET,
        training=TRAINING,
        search=search,
        devices=[HOST, BOARD],
        num_workers=1,
        finetune=FinetuneSettings(subnets=1, samples=1, max_epochs=1),
        artifact_dir=root / "var",
        data_root=root / "data",
    )
    write_table(board, request.job_dir / "tables" / f"{BOARD}.json")
    log = EventLog()
    outcome = run_job(request, log)
    results = read_results(request.job_dir / RESULTS_NAME)
    return Finished(request, outcome, log.after(0), results, space, {HOST: host, BOARD: board})
