"""Fuzzing the REST API from its own OpenAPI schema with schemathesis, in process (ASGI).

Every operation gets ``max_examples`` schema-valid requests (positive) and as many invalid
ones (negative: wrong types, out-of-range numbers, missing fields, bytes that are not JSON,
bad tokens), and the coverage phase's request-shape probes: each method a path does not have
(``OPTIONS`` among them) and bodies with a malformed or unsupported content type
(``coverage="all"``: the whole coverage phase, boundary values and missing fields too).
Each answer goes through every check schemathesis has (``CHECKS``), configured by the
repository's ``schemathesis.toml`` as the CLI is: no 5xx; a documented status code, content
type, body and headers; invalid input refused with a 4xx; valid input not refused except where
the configuration lets an operation answer its documented 422; a 405 with an ``Allow`` that
lists the path's methods; a write that succeeds with the token refused without it. Used by
tests/test_fuzz.py (bounded) and benchmarks/fuzz_api.py (many more examples).

Checks that act only in runs this module does not make, and pass here without looking:
``use_after_free`` and ``ensure_resource_availability`` compare a request with the earlier
ones of a stateful scenario (the CLI's stateful phase records them; these runs are one request
at a time), and ``object_level_authorization`` needs two identities in the configuration (the
service has one kind of token, and reads are the same for every client).

A schema does not say which strings a path must not be, so job submissions also get
``HOSTILE_ROOTS`` as ``dataset.root``: each once in the spec's example, and mixed into a third
of the generated bodies (which then are no longer valid: positive_data_acceptance is not asked
of them).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import is_check_class, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.meta import REQUEST_SHAPE_PROBES, coverage_scenario
from schemathesis.generation.modes import GenerationMode
from schemathesis.generation.overrides import Override
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

load_all_checks()
#: Every check schemathesis registers (its CLI's ``--checks all``).
CHECKS = [check for check in REGISTRY.get_all() if not is_check_class(check)]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
#: The project's schemathesis configuration, shared with the CLI.
CONFIG_FILE = Path(__file__).resolve().parents[1] / "schemathesis.toml"

JOBS = "POST /api/v1/jobs"
#: ``dataset.root`` values that raised from path resolution (a 500): a NUL byte, a component
#: over NAME_MAX (255) and a path over PATH_MAX (4096).
HOSTILE_ROOTS: dict[str, str] = {
    "NUL byte": "images\x00/train",
    "300-char component": "images/" + "c" * 300,
    "5000-char path": "/".join(["p" * 99] * 50) + "/x",
}

Coverage = Literal["probes", "all"]


@dataclass
class FuzzReport:
    """What was sent and what came back; ``failures`` maps a distinct failure to an example."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    hostile_roots: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(which of ``HOSTILE_ROOTS``, status) of the job submissions that carried one."""
    failures: dict[str, str] = field(default_factory=dict)
    operations: int = 0
    seconds: float = 0.0
    coverage_cases: int = 0
    methods_probed: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(method, status) of the requests with a method their path does not have."""

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
        "method": case.method,
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
    coverage: Coverage = "probes",
    on_operation: Callable[[str, str, float], None] | None = None,
) -> FuzzReport:
    """Fuzz every operation of ``app``'s schema; a failure is recorded, never raised, so one
    run reports all of them (Hypothesis shrinks each to a small example first)."""
    config = SchemathesisConfig.from_path(CONFIG_FILE)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    report = FuzzReport()
    started = time.perf_counter()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            report.operations += 1
            check = _checker(operation, report, auth)
            for mode in MODES:
                _fuzz_one(operation, mode, check, max_examples, derandomize)
                if on_operation is not None:
                    on_operation(operation.label, mode.value, time.perf_counter() - started)
            for case in _coverage_cases(schema, operation, coverage):
                report.coverage_cases += 1
                check(case, "coverage")
            if on_operation is not None:
                on_operation(operation.label, "coverage", time.perf_counter() - started)
    finally:  # schemathesis keeps the app's lifespan (its engine) running until told
        asgi.shutdown_lifespans()
    report.seconds = time.perf_counter() - started
    return report


def _checker(operation: Any, report: FuzzReport, auth: dict[str, str]) -> Callable[..., None]:
    """Send a case with the token, count the answer and run every check on it."""

    def check(case: Any, mode: str) -> None:
        response = case.call(headers=auth)
        report.statuses[(operation.label, response.status_code)] += 1
        if case.method != operation.method.upper():
            report.methods_probed[(case.method, response.status_code)] += 1
        hostile = _hostile_root(case)
        excluded = []
        if hostile is not None:
            report.hostile_roots[(hostile, response.status_code)] += 1
            excluded.append(positive_data_acceptance)  # the root made the body invalid
        try:
            case.validate_response(response, checks=CHECKS, excluded_checks=excluded, headers=auth)
        except BaseException as error:  # schemathesis raises a FailureGroup
            key = f"{operation.label} [{mode}]: {str(error).splitlines()[2:3]}"
            report.failures.setdefault(key, _describe(case, response, error))

    return check


def _coverage_cases(schema: Any, operation: Any, coverage: Coverage) -> list[Any]:
    """The coverage phase's cases for ``operation``: only the request-shape probes, or all."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=list(MODES),
        generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    return [
        case
        for case in generator
        if coverage == "all" or coverage_scenario(case) in REQUEST_SHAPE_PROBES
    ]


def _with_root(case_and_root: tuple[Any, str | None]) -> Any:
    case, root = case_and_root
    if root is not None and isinstance(case.body, dict):
        case.body = {**case.body, "dataset": {"kind": "imagefolder", "root": root}}
    return case


def _hostile_root(case: Any) -> str | None:
    dataset = case.body.get("dataset") if isinstance(case.body, dict) else None
    root = dataset.get("root") if isinstance(dataset, dict) else None
    return next((kind for kind, value in HOSTILE_ROOTS.items() if value == root), None)


def _strategy(operation: Any, mode: GenerationMode) -> Any:
    """The schema's cases; for job submissions, a third of them with a hostile root."""
    cases = operation.as_strategy(generation_mode=mode)
    if operation.label != JOBS:
        return cases
    roots = st.sampled_from([None] * 6 + list(HOSTILE_ROOTS.values()))
    return st.tuples(cases, roots).map(_with_root)


def _explicit_cases(operation: Any, mode: GenerationMode) -> list[Any]:
    """The spec's own example with each hostile root, so that every run sends all of them."""
    if operation.label != JOBS or mode != GenerationMode.POSITIVE:
        return []
    from service.api.schemas.jobs import EXAMPLE

    return [
        operation.Case(
            body={**EXAMPLE, "dataset": {"kind": "imagefolder", "root": root}},
            media_type="application/json",
        )
        for root in HOSTILE_ROOTS.values()
    ]


def _fuzz_one(
    operation: Any,
    mode: GenerationMode,
    check: Callable[..., None],
    max_examples: int,
    derandomize: bool,
) -> None:
    def run(case: Any) -> None:
        check(case, mode.value)

    for case in _explicit_cases(operation, mode):
        run = example(case=case)(run)
    test = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )(given(case=_strategy(operation, mode))(run))
    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (GET /health, negative)
        test()
