"""The REST API fuzzed from its OpenAPI schema (schemathesis) on SQLite and PostgreSQL: no
request, valid or not, gets a 5xx, an undocumented status, or a body the schema does not
describe; invalid ones get a 4xx.

Bounded for CI: ``NAS_FUZZ_EXAMPLES`` (default 20) valid and as many invalid requests per
operation, derandomized so a failure reproduces. ``benchmarks/fuzz_api.py`` runs many more.
"""

from __future__ import annotations

import os
from pathlib import Path

from _fuzz import fuzz_app
from _results import fill_results
from test_api_jobs import TOKEN, _settings

from service.app import create_app
from service.migrate import upgrade_database

EXAMPLES = int(os.environ.get("NAS_FUZZ_EXAMPLES", "20"))


def test_fuzzed_requests_get_no_5xx_and_answers_match_the_schema(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    (tmp_path / "data").mkdir()
    settings = _settings(database_url, tmp_path)
    fill_results(settings)  # a succeeded job with subnets and fronts: reads that find rows
    app = create_app(settings)
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())

    report = fuzz_app(app, token=TOKEN, max_examples=EXAMPLES)

    assert report.failures == {}, "\n\n".join(report.failures.values())
    assert report.server_errors == 0
    assert report.operations == operations
    assert report.requests >= operations * EXAMPLES  # about twice that: valid and invalid
    accepted = report.statuses[("POST /api/v1/jobs", 201)]
    assert accepted >= 1, "the fuzzer never got a job past validation"
