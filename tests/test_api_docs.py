"""docs/api.md and the OpenAPI schema cannot drift: every operation of the schema has its
section, and every section heading names an operation that exists."""

from __future__ import annotations

import re
from pathlib import Path

from service.app import create_app
from service.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
HEADING = re.compile(r"^#{2,4} `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`$", re.M)


def _operations() -> set[tuple[str, str]]:
    app = create_app(Settings(dispatcher_enabled=False))
    return {
        (method.upper(), path)
        for path, methods in app.openapi()["paths"].items()
        for method in methods
    }


def test_every_operation_has_a_section_and_every_section_an_operation() -> None:
    documented = {(method, path) for method, path in HEADING.findall(DOCS.read_text())}
    operations = _operations()
    assert len(operations) >= 15
    assert sorted(operations - documented) == [], "operations without a section in docs/api.md"
    assert sorted(documented - operations) == [], "sections of docs/api.md for no operation"


def test_the_query_parameters_of_the_subnet_list_are_documented() -> None:
    app = create_app(Settings(dispatcher_enabled=False))
    operation = app.openapi()["paths"]["/api/v1/jobs/{job_id}/subnets"]["get"]
    names = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
    text = DOCS.read_text()
    section = text[text.index("### `GET /api/v1/jobs/{job_id}/subnets`") :]
    section = section[: section.index("\n### ", 1)]
    assert [n for n in names if f"`{n}`" not in section] == []


def test_every_field_of_a_job_submission_is_documented() -> None:
    from service.api.schemas.jobs import JobCreate

    text = DOCS.read_text()
    section = text[text.index("### `POST /api/v1/jobs`") :]
    section = section[: section.index("\n### ", 1)]
    assert [n for n in JobCreate.model_fields if f"`{n}" not in section] == []
