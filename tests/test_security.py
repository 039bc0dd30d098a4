"""What docs/security.md promises, each a test: tokens on every mutating route (compared in
constant time), paths that cannot leave their roots, bounded bodies and job specs, no unsafe
deserialisation anywhere in the code base, and no cross-origin access by default.

SQLite only: these are about the API and the code, not the storage backend (the PostgreSQL
side of the same endpoints is covered by tests/test_api_*.py and tests/test_fuzz.py).
"""

from __future__ import annotations

import ast
import hmac
import json
import pickle
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _results import fill_results
from _serving import serving
from fastapi.testclient import TestClient
from sqlalchemy import update
from test_api_jobs import AUTH, SPEC, TOKEN, _settings

from nas.data import UnsafePickleError, safe_load
from service.api import auth
from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import Artifact, Job
from service.settings import ApiToken, Settings

REPO = Path(__file__).resolve().parents[1]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'var' / 'nas.db'}"
    upgrade_database(url)
    (tmp_path / "data").mkdir()
    return _settings(url, tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


# --- tokens ------------------------------------------------------------------------------------


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, read from the router itself, so
    a route left out of the OpenAPI schema (e.g. the dashboard's) is walked too."""
    try:  # FastAPI >= 0.16x keeps included routers nested; this flattens them
        from fastapi.routing import iter_route_contexts

        contexts = [(c.path, c.original_route) for c in iter_route_contexts(app.router.routes)]
    except ImportError:  # older FastAPI: a flat list
        contexts = [(getattr(r, "path", ""), r) for r in app.routes]
    return [
        (method, path)
        for path, route in contexts
        for method in sorted(getattr(route, "methods", None) or ())
    ]


def _mutating_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route that changes something, path parameters set to 1."""
    return [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for method, path in _routes(client.app)
        if method not in SAFE_METHODS
    ]


def test_every_mutating_route_refuses_a_missing_or_wrong_token(client: TestClient) -> None:
    routes = _mutating_routes(client)
    schema_ops = {
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, methods in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in methods
        if method.upper() not in SAFE_METHODS
    }
    assert schema_ops <= set(routes) and len(schema_ops) >= 6
    near_miss = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
    refusals = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {near_miss}"},  # one character off
        {"Authorization": f"Bearer {TOKEN}x"},  # the token as a prefix
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix of the token
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]
    failures = []
    for method, path in routes:
        for headers in refusals:
            response = client.request(method, path, json=SPEC, headers=headers)
            if response.status_code != 401 or "token" not in response.json().get("detail", ""):
                failures.append((method, path, headers, response.status_code))
    assert failures == []
    assert client.get("/api/v1/jobs").json()["count"] == 0  # nothing was created


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hmac.compare_digest`` on every configured token, with no early exit on a match, so
    timing tells neither how much of a guess was right nor which token matched."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = [
        ApiToken.unnamed(token)
        for token in (TOKEN, "second-token-0123456789", "third-token-0123456789")
    ]
    assert auth.match_token(TOKEN, tokens) == tokens[0]
    assert len(calls) == 3  # the match on the first did not stop the loop
    calls.clear()
    assert auth.match_token("nope", tokens) is None and len(calls) == 3
    tree = ast.parse(Path(auth.__file__).read_text())
    function = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "match_token"
    )
    compares = [n for n in ast.walk(function) if isinstance(n, ast.Compare)]
    assert not any(isinstance(op, ast.Eq | ast.NotEq) for c in compares for op in c.ops)


# --- paths -------------------------------------------------------------------------------------


def test_dataset_roots_cannot_escape_the_data_root(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (settings.data_root / "link").symlink_to(outside, target_is_directory=True)
    for root in ("..", "../outside", "sub/../../outside", str(outside), "/etc", "link"):
        spec = {**SPEC, "dataset": {"kind": "imagefolder", "root": root}}
        response = client.post("/api/v1/jobs", json=spec, headers=AUTH)
        assert response.status_code == 422, (root, response.text)
        assert response.json()["detail"][0]["field"] == "dataset.root"
    assert client.get("/api/v1/jobs").json()["count"] == 0


def test_artifact_paths_cannot_escape_the_artifact_dir(settings: Settings, tmp_path: Path) -> None:
    """A row whose path leads out of NAS_ARTIFACT_DIR (``..``, absolute, a symlink) is never
    served, whatever put it there."""
    results = fill_results(settings)
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"secret bytes")
    link = settings.artifact_dir / "jobs" / "link.onnx"
    link.symlink_to(secret)
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            # A failed job: nothing may be exported on demand in place of the refused file.
            session.execute(update(Job).values(state="failed"))
            session.execute(update(Artifact).values(path="../secret.onnx"))
            session.commit()
            paths = ["../secret.onnx", str(secret), "jobs/link.onnx", "jobs/../../secret.onnx"]
            with TestClient(create_app(settings), raise_server_exceptions=False) as client:
                for path in paths:
                    session.execute(update(Artifact).values(path=path))
                    session.commit()
                    url = f"/api/v1/subnets/{results.onnx_subnet}/download"
                    response = client.get(url, params={"format": "onnx"})
                    assert response.status_code == 409, (path, response.status_code)
                    assert b"secret bytes" not in response.content
    finally:
        engine.dispose()


# --- sizes -------------------------------------------------------------------------------------


def test_every_body_is_limited_before_it_is_read(settings: Settings) -> None:
    small = settings.model_copy(update={"max_request_bytes": 2048})
    body = b'{"name": "' + b"x" * 4096 + b'"}'
    with TestClient(create_app(small)) as client:
        for method, path in _mutating_routes(client):
            for headers in ({}, AUTH):  # refused before auth, before parsing
                response = client.request(method, path, content=body, headers=headers)
                assert response.status_code == 413, (method, path, response.text)
                assert "NAS_MAX_REQUEST_BYTES" in response.json()["detail"]
    with pytest.raises(ValueError, match="max_request_bytes"):
        Settings(max_request_bytes=2 * 1024**3)


def _refusal_before_reading(app: Any, method: str, path: str, token: str | None) -> dict[str, Any]:
    """Send a request straight through ASGI (no lifespan: no database) and return its answer
    (status, WWW-Authenticate, detail), failing if the app read any of the body."""
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    read: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(path)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        anyio.run(app, scope, receive, send)
    finally:  # before a failure further in (the app has no database here)
        assert read == [], f"{method} {path}: the body was read before the token was checked"
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return {
        "status": start["status"],
        "www-authenticate": dict(start["headers"]).get(b"www-authenticate"),
        "detail": json.loads(body)["detail"],
    }


def test_the_token_is_checked_before_the_body_is_read(settings: Settings) -> None:
    """FastAPI reads and parses a body before it runs ``require_write``; the middleware in front
    refuses a request without a valid token first, with the same 401, and reads too when
    NAS_READS_REQUIRE_TOKEN is set."""
    app = create_app(settings)
    for method, path in (("POST", "/api/v1/jobs"), ("POST", "/api/v1/devices/b/latency-tables")):
        missing = _refusal_before_reading(app, method, path, None)
        assert missing["status"] == 401 and missing["www-authenticate"] == b"Bearer"
        assert missing["detail"].startswith("missing bearer token")
        wrong = _refusal_before_reading(app, method, path, "wrong-token-0123456789")
        assert wrong["status"] == 401 and wrong["detail"] == "invalid bearer token"
    private = create_app(settings.model_copy(update={"reads_require_token": True}))
    for path in ("/api/v1/jobs", "/api/v1/devices"):
        assert _refusal_before_reading(private, "GET", path, None)["status"] == 401


#: How long /health may take while large bodies are in flight.
_HEALTH_BUDGET_S = 0.2


def _padded(size: int) -> bytes:
    """A job spec padded to ``size`` bytes with numbers: slow to parse (the C parser takes
    0.3-0.5 s for 6 MB here) but light on the garbage collector (floats are not tracked), so a
    stall of /health is the parse's."""
    count = (size - len(json.dumps(SPEC))) // 4
    return json.dumps({**SPEC, "padding": [0.5] * count}, separators=(",", ":")).encode()


def _health_during(
    base: str, posts: list[tuple[str, dict[str, str]]], body: bytes, rounds: int
) -> tuple[list[float], list[int]]:
    """/health's latencies, measured every 20 ms while each of ``posts`` (path, headers) sends
    ``body`` ``rounds`` times from its own thread; and the statuses those posts got. Clients
    are made first: making one loads CA certificates, which holds the GIL for a while."""
    clients = [httpx.Client(base_url=base, timeout=60) for _ in range(len(posts) + 1)]

    def post(client: httpx.Client, path: str, headers: dict[str, str]) -> list[int]:
        return [client.post(path, content=body, headers=headers).status_code for _ in range(rounds)]

    latencies: list[float] = []
    try:
        with ThreadPoolExecutor(len(posts)) as pool:
            futures = [pool.submit(post, c, *p) for c, p in zip(clients[1:], posts, strict=True)]
            due = time.perf_counter()
            while not all(f.done() for f in futures):
                time.sleep(max(0.0, due - time.perf_counter()))
                assert clients[0].get("/health").status_code == 200
                answered = time.perf_counter()
                # From when it was due, not sent: the server shares this process's GIL, and a
                # parse that holds it stops this thread too, maybe before it could send.
                latencies.append(answered - due)
                due = answered + 0.02
            statuses = [status for f in futures for status in f.result()]
    finally:
        for client in clients:
            client.close()
    return latencies, statuses


def test_large_posts_without_a_token_are_refused_before_they_are_read(settings: Settings) -> None:
    """Three clients posting 6 MB bodies without a valid token, ten each (issue 30: three such
    posts stalled /health for 8 s): each is a 401 before its body is read, so nothing is parsed
    and /health stays quick."""
    body = _padded(6 * 2**20)
    json_type = {"Content-Type": "application/json"}
    posts = [
        ("/api/v1/devices/big-board/latency-tables", json_type),
        ("/api/v1/jobs", json_type),
        ("/api/v1/jobs", {**json_type, "Authorization": "Bearer wrong-token-0123456789"}),
    ]
    with serving(settings) as base:
        latencies, statuses = _health_during(base, posts, body, rounds=10)
    assert set(statuses) == {401}
    assert max(latencies) < _HEALTH_BUDGET_S, latencies
    assert len(latencies) >= 3, latencies  # measured while the posts were in flight


def test_a_large_body_is_parsed_off_the_event_loop(settings: Settings) -> None:
    """A 6 MB body with a valid token is parsed in a worker thread (``OffLoopJSONRoute``), in
    Python that gives the GIL up between values: the C parser, even in a thread, would hold it
    for the whole document and stall the loop as long."""
    body = _padded(6 * 2**20)
    posts = [("/api/v1/jobs", {**AUTH, "Content-Type": "application/json"})]
    with serving(settings) as base:
        latencies, statuses = _health_during(base, posts, body, rounds=1)
    assert statuses == [422]  # the padding is no field of a job
    assert max(latencies) < _HEALTH_BUDGET_S, latencies
    assert len(latencies) >= 3, latencies  # measured while the posts were in flight


# A field that scales the work or the memory of a job, and the bound it must have.
_WORK_FIELDS: list[tuple[tuple[str, ...], int | float]] = [
    (("training", "epochs"), 10_000),
    (("training", "batch_size"), 65_536),
    (("training", "bn_recalibration_batches"), 10_000),
    (("training", "complexity_tries"), 100_000),
    (("search", "population"), 10_000),
    (("search", "generations"), 10_000),
    (("search", "evaluations"), 100_000),
    (("dataset", "num_samples"), 1_000_000),
    (("dataset", "resolution"), 1024),
    (("num_workers",), 64),
]


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {**SPEC, "dataset": {"kind": "synthetic"}}
    node = spec
    for key in path[:-1]:
        node[key] = dict(node.get(key, {}))
        node = node[key]
    node[path[-1]] = value
    return spec


@pytest.mark.parametrize(("path", "bound"), _WORK_FIELDS, ids=lambda v: str(v))
def test_job_specs_bound_the_work_a_request_can_ask_for(
    client: TestClient, path: tuple[str, ...], bound: int
) -> None:
    response = client.post("/api/v1/jobs", json=_nested(path, bound + 1), headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == ".".join(path)


def test_job_specs_bound_the_number_of_devices_and_budgets(client: TestClient) -> None:
    many = [f"device-{i}" for i in range(17)]
    response = client.post("/api/v1/jobs", json={**SPEC, "devices": many}, headers=AUTH)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "devices"
    assert client.get("/api/v1/jobs").json()["count"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"training": {"batch_size": 4096}, "dataset": {"kind": "digits", "resolution": 512}},
            "training.batch_size",
        ),
        (
            {"dataset": {"kind": "synthetic", "resolution": 256, "num_samples": 1_000_000}},
            "dataset.num_samples",
        ),
    ],
)
def test_job_specs_bound_the_memory_their_fields_multiply_to(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/jobs", json={**SPEC, **changes}, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["field"] == field and "allowed values: <=" in detail["msg"]
    assert client.get("/api/v1/jobs").json()["count"] == 0


# --- deserialisation -----------------------------------------------------------------------------


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def _keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


#: Files allowed to deserialise in a way the rule below forbids, and why.
_ALLOWED = {
    # The restricted unpickler itself.
    ("nas/data/safe_pickle.py", "pickle.Unpickler"),
}


def test_no_unsafe_deserialisation_in_the_code_base() -> None:
    """Checkpoints load with ``torch.load(weights_only=True)``; pickles only through the
    restricted unpickler (``nas.data.safe_load``); no ``yaml.load`` without a safe loader and
    no numpy pickles. A new call elsewhere fails here until it is made safe."""
    problems = []
    files = [
        p for d in ("nas", "search_spaces", "workers", "service") for p in (REPO / d).rglob("*.py")
    ]
    files += list((REPO / "benchmarks").rglob("*.py"))
    assert len(files) > 50
    for file in files:
        rel = file.relative_to(REPO).as_posix()
        for name, call in _calls(ast.parse(file.read_text(), rel)):
            short = name.split(".")[-1]
            if (rel, name) in _ALLOWED:
                continue
            if short == "load" and name.startswith("torch") and name != "torch.jit.load":
                if _keyword(call, "weights_only") is not True:
                    problems.append(f"{rel}:{call.lineno} {name} without weights_only=True")
            elif name.startswith(("pickle.", "cPickle.", "dill.", "joblib.", "marshal.")) and (
                short.startswith("load") or short == "Unpickler"
            ):
                problems.append(f"{rel}:{call.lineno} {name}: use nas.data.safe_load")
            elif name in {"yaml.load", "yaml.unsafe_load", "yaml.full_load"}:
                problems.append(f"{rel}:{call.lineno} {name}: use yaml.safe_load")
            elif short == "load" and name.startswith(("np.", "numpy.")):
                if _keyword(call, "allow_pickle") is True:
                    problems.append(f"{rel}:{call.lineno} {name} with allow_pickle=True")
            elif name in {"eval", "exec"}:
                problems.append(f"{rel}:{call.lineno} {name}()")
    assert problems == []


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("touch pwned",))


def test_the_restricted_unpickler_refuses_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for payload in (_Boom(), {"data": _Boom()}, {"labels": [1, 2], "f": print}):
        with pytest.raises(UnsafePickleError, match="refused"):
            safe_load(pickle.dumps(payload))
    assert not (tmp_path / "pwned").exists()
    assert safe_load(pickle.dumps({b"labels": [1, 2, 3]})) == {b"labels": [1, 2, 3]}


# --- cross-origin ------------------------------------------------------------------------------


def test_cross_origin_requests_are_not_allowed_by_default(client: TestClient) -> None:
    """No CORS middleware: a browser on another origin gets no Access-Control-Allow-* header,
    so it can neither read answers nor send a token-bearing request."""
    origin = {"Origin": "https://evil.example"}
    preflight = client.options(
        "/api/v1/jobs",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code >= 400
    read = client.get("/api/v1/jobs", headers=origin)
    assert read.status_code == 200
    for response in (preflight, read):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_docs_security_names_only_tests_that_exist() -> None:
    """docs/security.md's table cites tests by ``file::name``; each must exist."""
    text = (REPO / "docs" / "security.md").read_text()
    cited = re.findall(r"(tests/\w+\.py)::(\w+)", text)
    assert len(cited) >= 15
    missing = []
    for file, name in cited:
        tree = ast.parse((REPO / file).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{file}::{name}")
    assert missing == []
