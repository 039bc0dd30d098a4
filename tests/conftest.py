"""Shared fixtures: a private data root, a fresh SQLite file or PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# Ray's token auth for every Ray the tests start or join, set before anything imports Ray: a
# process reads its auth mode once, and a local ray.init() turns token auth on by default while
# joining a cluster by address (tests/test_multinode.py) does not. One mode for the whole run.
os.environ.setdefault("RAY_AUTH_MODE", "token")

POSTGRES_URL = os.environ.get(
    "NAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for a module (``pytestmark = usefixtures("one_thread")``):
    small forwards gain nothing from threads, and spinning OpenMP threads stall badly when
    other processes share the 2 cores; restored afterwards for the other modules."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray of 2 CPUs for one test module (started once, not per test: ~5 s each)."""
    pytest.importorskip("ray")
    from workers.cluster import connect_ray

    connect_ray(num_cpus=2)
    import ray

    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def profiled_host_tables(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tables(space, **sized)``: a folder holding only this host's torch table for the tiny
    ``space`` (sized like ``search_spaces.get``'s ``num_classes``/``in_channels``), profiled
    once for the whole run (~20 s each) and copied by the modules whose jobs take it. A job
    re-anchors a copied table older than ``workers.tables.ANCHOR_MAX_AGE_S`` as it would any."""
    import search_spaces
    from workers.tables import host_table, host_table_path

    made: dict[str, Path] = {}

    def tables(space: str, **sized: int) -> Path:
        built = search_spaces.get(space, preset="tiny", **sized)
        name = host_table_path(
            Path("."), "host-cpu-torch", space, "tiny", built.num_classes, built.in_channels
        ).name
        if name not in made:
            artifact_dir = tmp_path_factory.mktemp("host-tables") / "var"
            host_table(artifact_dir, "host-cpu-torch", space, "tiny", **sized)
            made[name] = artifact_dir / "tables"
        return made[name]

    return tables


@pytest.fixture(scope="session")
def finished_job(
    tmp_path_factory: pytest.TempPathFactory, profiled_host_tables: Callable[..., Path]
) -> Any:
    """A whole tiny ofa_mbv3 job on digits (``tests/_finished_job.py``), run once for the
    session. Its stages run on the local Ray of the module that first asks (started here when
    none runs yet, in the shape ``ray_local`` starts it; that module's ``ray_local`` stops it).
    Modules that change its files work on a copy."""
    from _finished_job import run_finished_job

    from workers.cluster import connect_ray

    connect_ray(num_cpus=2)
    root = tmp_path_factory.mktemp("finished-job")
    return run_finished_job(root, profiled_host_tables("ofa_mbv3"))


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """The folder of the Debian package dataset-fashion-mnist. Without it a test skips, naming
    the install command, unless NAS_REQUIRE_FASHION_MNIST=1 (CI), where it fails."""
    from nas.data import DataPathError, DatasetSpec, check_dataset_files

    try:
        return check_dataset_files(DatasetSpec(kind="fashion_mnist"), None)
    except DataPathError as exc:
        reason = str(exc)  # names the folder and `apt-get install dataset-fashion-mnist`
    if os.environ.get("NAS_REQUIRE_FASHION_MNIST") == "1":
        pytest.fail(reason + "; NAS_REQUIRE_FASHION_MNIST=1", pytrace=False)
    pytest.skip(reason)


def _postgres_admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (no test shares a live database)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    admin = _postgres_admin_engine()
    name = f"nas_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("NAS_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs against both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'nas.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated ``database_url`` (SQLite and PostgreSQL alike)."""
    from service.db import create_db_engine, create_session_factory
    from service.migrate import upgrade_database

    upgrade_database(database_url)
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()
