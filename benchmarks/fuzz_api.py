"""Fuzz the REST API from its OpenAPI schema with many more examples than the CI test.

Same checks and configuration as tests/test_fuzz.py (every schemathesis check, with the
repository's schemathesis.toml), plus the whole coverage phase (boundary values, missing and
duplicated fields, every method a path lacks), in process over ASGI, on a fresh SQLite file
(or an empty PostgreSQL database given with --database-url) holding one finished job with
subnets and fronts. Prints the requests per operation and status, and every distinct failure
with a shrunk example; exits 1 if there is one.

    nice -n 10 .venv/bin/python benchmarks/fuzz_api.py                      # 300 per operation
    nice -n 10 .venv/bin/python benchmarks/fuzz_api.py --examples 1000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/nas_fuzz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _fuzz import fuzz_app
from _results import fill_results

from service.app import create_app
from service.migrate import upgrade_database
from service.settings import Settings

TOKEN = "fuzz-token-0123456789abcdef"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="per operation and mode")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--random", action="store_true", help="a new random seed (default: fixed)")
    parser.add_argument(
        "--coverage",
        choices=["all", "probes"],
        default="all",
        help="the coverage phase's cases: all (default) or the request-shape probes (as CI)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = args.database_url or f"sqlite:///{root / 'nas.db'}"
        upgrade_database(url)
        (root / "data").mkdir()
        settings = Settings(
            database_url=url,
            artifact_dir=root / "var",
            data_root=root / "data",
            api_tokens=[TOKEN],
            dispatcher_enabled=False,
        )
        fill_results(settings)
        report = fuzz_app(
            create_app(settings),
            token=TOKEN,
            max_examples=args.examples,
            derandomize=not args.random,
            coverage=args.coverage,
            on_operation=lambda label, mode, s: print(f"  {s:7.1f} s  {label} [{mode}]"),
        )

    per_operation: dict[str, dict[int, int]] = defaultdict(dict)
    for (label, status), count in report.statuses.items():
        per_operation[label][status] = count
    print(f"\n{'operation':<58} requests  statuses")
    for label, statuses in sorted(per_operation.items()):
        listed = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
        print(f"{label:<58} {sum(statuses.values()):>8}  {listed}")
    print(
        f"\n{report.operations} operations, {report.requests} requests in {report.seconds:.1f} s "
        f"({args.examples} examples per operation and mode, {report.coverage_cases} coverage "
        f"cases, {url.split(':')[0]}): {report.by_class()}; 5xx: {report.server_errors}; "
        f"failures: {len(report.failures)}"
    )
    for key, example in report.failures.items():
        print(f"\nFAILURE {key}\n{example}")
    return 1 if report.failures or report.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
