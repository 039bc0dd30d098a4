"""Fuzzing the REST API from its own OpenAPI schema with schemathesis, in process (ASGI).

Every operation gets ``max_examples`` schema-valid requests (positive) and as many invalid
ones (negative: wrong types, out-of-range numbers, missing fields, bytes that are not JSON,
bad tokens). Each answer must be no 5xx, a status code the schema documents, a body and a
content type that match the schema, and, for invalid input, a 4xx. Used by tests/test_fuzz.py
(bounded) and benchmarks/fuzz_api.py (many more examples).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class FuzzReport:
    """What was sent and what came back; ``failures`` maps a distinct failure to an example."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    operations: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def by_class(self) -> dict[str, int]:
        classes: Counter[str] = Counter()
        for (_, status), n in self.statuses.items():
            classes[f"{status // 100}xx"] += n
        return dict(sorted(classes.items()))


def _describe(case: Any, response: Any, error: BaseException) -> str:
    sent = {
        "path": case.path_parameters,
        "query": case.query,
        "headers": {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
        "body": case.body,
    }
    return f"{error}\nsent: {str(sent)[:600]}\ngot {response.status_code}: {response.text[:400]}"


def fuzz_app(
    app: Any,
    *,
    token: str,
    max_examples: int,
    derandomize: bool = True,
    on_operation: Callable[[str, str, float], None] | None = None,
) -> FuzzReport:
    """Fuzz every operation of ``app``'s schema; a failure is recorded, never raised, so one
    run reports all of them (Hypothesis shrinks each to a small example first)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    started = time.perf_counter()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            report.operations += 1
            for mode in MODES:
                _fuzz_one(
                    operation,
                    mode,
                    report,
                    token=token,
                    max_examples=max_examples,
                    derandomize=derandomize,
                )
                if on_operation is not None:
                    on_operation(operation.label, mode.value, time.perf_counter() - started)
    finally:  # schemathesis keeps the app's lifespan (its engine) running until told
        asgi.shutdown_lifespans()
    report.seconds = time.perf_counter() - started
    return report


def _fuzz_one(
    operation: Any,
    mode: GenerationMode,
    report: FuzzReport,
    *,
    token: str,
    max_examples: int,
    derandomize: bool,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        report.statuses[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as error:  # schemathesis raises a FailureGroup
            key = f"{operation.label} [{mode.value}]: {str(error).splitlines()[2:3]}"
            report.failures.setdefault(key, _describe(case, response, error))

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (GET /health, negative)
        run()
