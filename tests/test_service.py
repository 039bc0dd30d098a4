"""The service skeleton: health, migrations on SQLite and PostgreSQL, errors as JSON."""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from nas import __version__
from service.app import create_app
from service.db import create_db_engine, create_session_factory
from service.dispatcher import Dispatcher
from service.migrate import alembic_config, current_revision, head_revision, upgrade_database
from service.settings import Settings


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, artifact_dir=tmp_path / "var")


def test_migrations_upgrade_and_downgrade(database_url: str) -> None:
    upgrade_database(database_url)
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        assert "alembic_version" in inspect(engine).get_table_names()
        upgrade_database(database_url)  # idempotent: a second start changes nothing
        assert current_revision(engine) == head_revision()
        command.downgrade(alembic_config(database_url), "base")
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_health_reports_version_once_migrated(database_url: str, tmp_path: Path) -> None:
    upgrade_database(database_url)
    with TestClient(create_app(_settings(database_url, tmp_path))) as client:
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["database"] == "ok" and body["schema_revision"] == head_revision()


def test_health_is_503_before_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with TestClient(create_app(_settings(url, tmp_path))) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "outdated"


def test_health_is_503_when_database_is_unreachable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    with TestClient(create_app(_settings(url, tmp_path))) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


def test_errors_are_json_without_traceback(tmp_path: Path) -> None:
    app = create_app(_settings(f"sqlite:///{tmp_path / 'x.db'}", tmp_path))
    boom = APIRouter()

    @boom.get("/boom")
    def _boom() -> None:
        raise RuntimeError("secret internals")

    app.include_router(boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        missing = client.get("/no/such/route")
        crashed = client.get("/boom")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    assert crashed.status_code == 500 and crashed.json() == {"detail": "internal server error"}
    assert "secret" not in crashed.text and "Traceback" not in crashed.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_m_service_migrates_and_serves(tmp_path: Path) -> None:
    """What `make run` does: a real process applies migrations and answers /health."""
    port = _free_port()
    env = {
        **os.environ,
        "NAS_PORT": str(port),
        "NAS_HOST": "127.0.0.1",
        "NAS_ARTIFACT_DIR": str(tmp_path / "var"),
        "NAS_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'nas.db'}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"service did not start:\n{proc.stdout.read() if proc.stdout else ''}"
                    )
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["version"] == __version__
        assert (tmp_path / "var" / "nas.db").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _start_up_failure(database_url: str, tmp_path: Path) -> tuple[int, list[str], float]:
    """Run ``python -m service`` on a database it must refuse: exit code, output lines, seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAS_")}
    env.update(
        NAS_PORT=str(_free_port()),
        NAS_ARTIFACT_DIR=str(tmp_path / "var"),
        NAS_DATABASE_URL=database_url,
    )
    started = time.monotonic()
    # A service that started after all is killed by the timeout and fails the test.
    proc = subprocess.run(
        [sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, (proc.stdout + proc.stderr).splitlines(), time.monotonic() - started


def _migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    upgrade_database(url)
    with sqlite3.connect(path) as connection:  # everything into the file, none left in the WAL
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("random bytes", "is not a SQLite database (file is not a database); move it aside"),
        ("truncated", "is corrupt (database disk image is malformed); restore it"),
        ("a directory", "is a directory, not a file; remove it or point NAS_DATABASE_URL"),
    ],
)
def test_start_up_on_an_unusable_database_file_is_one_clear_line(
    damage: str, expected: str, tmp_path: Path
) -> None:
    """No traceback: one line naming the file, what is wrong with it and what to do."""
    path = tmp_path / "nas.db"
    if damage == "random bytes":
        path.write_bytes(random.Random(0).randbytes(64 * 1024))
    elif damage == "truncated":
        _migrated_sqlite(path)
        path.write_bytes(path.read_bytes()[:100])  # the header survives, the pages do not
    else:
        path.mkdir()
    returncode, lines, _ = _start_up_failure(f"sqlite:///{path}", tmp_path)
    assert returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: database {path} {expected}"), lines


def test_start_up_on_a_locked_database_file_is_one_clear_line_not_a_hang(tmp_path: Path) -> None:
    """Another process holding the write lock: the start waits the busy timeout (here the URL's
    1 s; 5 s by default), then says so, instead of a traceback or waiting for ever."""
    path = tmp_path / "nas.db"
    _migrated_sqlite(path)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        returncode, lines, took = _start_up_failure(f"sqlite:///{path}?timeout=1", tmp_path)
    finally:
        holder.close()
    assert returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: database {path} is locked by another process (database is locked); stop"
    ), lines
    assert took < 30


def _corrupt_table(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` and of its indexes, as a failing disk would."""
    with sqlite3.connect(path) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            row[0]
            for row in connection.execute(
                "SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0", (table,)
            )
        ]
    with path.open("r+b") as file:
        for page in pages:
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)


def test_a_database_corrupted_under_a_running_app_is_a_503_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/health reads the data (not only the schema revision) and says why; requests are 503s
    with the reason, not 500s; the dispatcher logs the reason and keeps retrying."""
    path = tmp_path / "nas.db"
    url = _migrated_sqlite(path)
    settings = _settings(url, tmp_path).model_copy(update={"dispatcher_enabled": False})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200  # its connection now caches every page
        _corrupt_table(path, "jobs")
        health = client.get("/health")
        listed = client.get("/api/v1/jobs")
    assert health.status_code == 503, health.text
    assert health.json()["database"] == "unavailable"
    assert health.json()["reason"].startswith("database is corrupt ("), health.text
    assert listed.status_code == 503, listed.text
    assert listed.json() == {"detail": "database is corrupt (database disk image is malformed)"}

    engine = create_db_engine(url)
    dispatcher = Dispatcher(settings, create_session_factory(engine))
    caplog.set_level("WARNING", logger="service.dispatcher")
    dispatcher.start()
    try:
        deadline = time.monotonic() + 10
        while not any("malformed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the dispatcher did not report the corruption"
            time.sleep(0.05)
        assert dispatcher._thread is not None and dispatcher._thread.is_alive()
    finally:
        dispatcher.stop(timeout=10)
        engine.dispose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "service.dispatcher"]
    assert warnings[0] == (
        "dispatcher: database unavailable: database is corrupt "
        "(database disk image is malformed); retrying every 5 s"
    )


def _descendants(root: int) -> set[int]:
    """``root`` and every process under it (Ray's GCS, raylet, agents and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _listening(pids: set[int]) -> dict[str, str]:
    """Listening TCP sockets of ``pids``: local address -> process name (from /proc, no ss)."""
    owners: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except OSError:
            continue
    found: dict[str, str] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state, inode = line.split()[1], line.split()[3], line.split()[9]
            if state != "0A" or inode not in owners:  # 0A: LISTEN
                continue
            host, port = local.split(":")
            raw = bytes.fromhex(host)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(packed)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped  # gRPC binds 127.0.0.1 as ::ffff:127.0.0.1
            name = Path(f"/proc/{owners[inode]}/comm").read_text().strip()
            found[f"{address}:{int(port, 16)}"] = name
            assert len(host) == width
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_the_local_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """`make run`'s private Ray: GCS, raylet, object manager, agents and workers all bind to
    loopback (none on 0.0.0.0 or the machine's address) and run with token authentication."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAS_", "RAY_"))}
    env.update(
        NAS_PORT=str(port),
        NAS_ARTIFACT_DIR=str(tmp_path / "var"),
        NAS_DATABASE_URL=f"sqlite:///{tmp_path / 'var' / 'nas.db'}",
        NAS_RAY_NUM_CPUS="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
                time.sleep(0.2)
        # A job makes the dispatcher start Ray; the job's own work does not matter here.
        spec = {
            "name": "loopback probe",
            "space": "bignas",
            "dataset": {"kind": "synthetic", "num_samples": 200, "resolution": 24},
            "training": {"epochs": 1, "batch_size": 32, "sampler": "uniform", "warmup_epochs": 0},
        }
        submitted = httpx.post(f"{base}/api/v1/jobs", json=spec, timeout=10)
        assert submitted.status_code == 201, submitted.text
        deadline = time.monotonic() + 90
        names: set[str] = set()
        while not {"gcs_server", "raylet"} <= names or not any(
            n.startswith("ray::") for n in names
        ):
            assert time.monotonic() < deadline, f"Ray did not start: {sorted(names)}"
            time.sleep(1.0)
            listening = _listening(_descendants(proc.pid))
            names = set(listening.values())
        time.sleep(2.0)  # the agents and the job's worker bind a moment later
        listening = _listening(_descendants(proc.pid))
        exposed = {
            a: n
            for a, n in listening.items()
            if not ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback
        }
        assert not exposed, f"listening beyond loopback: {exposed}"
        gcs = next(
            pid
            for pid in _descendants(proc.pid)
            if Path(f"/proc/{pid}/comm").read_text().strip() == "gcs_server"
        )
        environ = Path(f"/proc/{gcs}/environ").read_bytes().split(b"\0")
        assert b"RAY_AUTH_MODE=token" in environ
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
