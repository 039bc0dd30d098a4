"""Every job file in examples/ is a valid submission: a JobCreate body whose training phases
can be built and whose devices are the built-in host devices, each with a latency budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import search_spaces
from nas.hardware import BUILTIN_NAMES
from nas.training.schedules import build_phases
from service.api.schemas.jobs import JobCreate

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("digits-*.yaml"))


def test_there_is_one_example_per_search_space() -> None:
    spaces = {yaml.safe_load(path.read_text())["space"] for path in EXAMPLES}
    assert spaces == set(search_spaces.names())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_job_is_a_valid_submission(path: Path) -> None:
    job = JobCreate.model_validate(yaml.safe_load(path.read_text()))
    assert job.preset == "tiny" and job.dataset.kind == "digits"
    assert 1 <= job.training.epochs <= 8  # minutes on one CPU core, not hours
    assert set(job.devices) == set(BUILTIN_NAMES)
    assert {name: budget.latency_ms is not None for name, budget in job.search.budgets.items()} == {
        name: True for name in BUILTIN_NAMES
    }
    schedule = (
        job.training.schedule or search_spaces.get(job.space, preset="tiny").default_training[0]
    )
    assert build_phases(job.training, schedule)  # e.g. one epoch per progressive-shrinking phase
