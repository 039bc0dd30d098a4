"""Settings: the NAS_* names, their defaults, and failing fast on bad or insecure values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings

NAMES = (
    "DATA_ROOT",
    "ARTIFACT_DIR",
    "DATABASE_URL",
    "RAY_ADDRESS",
    "RAY_DASHBOARD",
    "API_TOKENS",
    "READS_REQUIRE_TOKEN",
    "MAX_REQUEST_BYTES",
    "DISPATCHER_ENABLED",
    "MAX_CONCURRENT_JOBS",
    "RAY_NUM_CPUS",
    "JOB_LEASE_S",
    "JOB_MAX_ATTEMPTS",
    "HOST",
    "PORT",
    "SHARE_PORT",
)
TOKEN = "t0ken-with-enough-characters"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(f"NAS_{name}", raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.artifact_dir == Path("./var/")
    assert settings.database_url.startswith("sqlite:///./var/")
    assert settings.ray_address is None
    assert settings.api_tokens == []
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_every_documented_name_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NAS_DATA_ROOT", str(tmp_path / "d"))
    monkeypatch.setenv("NAS_ARTIFACT_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("NAS_DATABASE_URL", "postgresql+psycopg://u@db:5432/nas")
    monkeypatch.setenv("NAS_RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("NAS_API_TOKENS", f'["{TOKEN}"]')
    monkeypatch.setenv("NAS_HOST", "0.0.0.0")
    monkeypatch.setenv("NAS_PORT", "9000")
    monkeypatch.setenv("NAS_READS_REQUIRE_TOKEN", "true")
    monkeypatch.setenv("NAS_MAX_REQUEST_BYTES", "65536")
    monkeypatch.setenv("NAS_DISPATCHER_ENABLED", "false")
    monkeypatch.setenv("NAS_MAX_CONCURRENT_JOBS", "4")
    monkeypatch.setenv("NAS_RAY_NUM_CPUS", "2")
    monkeypatch.setenv("NAS_JOB_LEASE_S", "10")
    monkeypatch.setenv("NAS_JOB_MAX_ATTEMPTS", "5")
    settings = Settings()
    assert settings.reads_require_token and not settings.dispatcher_enabled
    assert (settings.max_request_bytes, settings.max_concurrent_jobs) == (65536, 4)
    assert (settings.ray_num_cpus, settings.job_lease_s, settings.job_max_attempts) == (2, 10, 5)
    assert settings.data_root == tmp_path / "d" and settings.artifact_dir == tmp_path / "a"
    assert settings.database_url.startswith("postgresql")
    assert settings.ray_address == "ray://head:10001"
    assert [entry.token for entry in settings.api_tokens] == [TOKEN]
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert set(Settings.model_fields) == {name.lower() for name in NAMES}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NAS_API_TOKENS", "not json", "JSON list"),
        ("NAS_API_TOKENS", '["short"]', "at least 16"),
        ("NAS_PORT", "70000", "less than or equal to 65535"),
        ("NAS_DATABASE_URL", "mysql://x@y/z", "not supported"),
        ("NAS_DATABASE_URL", "::nonsense::", "not a database URL"),
        ("NAS_HOST", "0.0.0.0", "NAS_API_TOKENS"),
    ],
)
def test_bad_or_insecure_values_fail_fast(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_loopback_hosts_need_no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("localhost", "127.0.0.2", "::1"):
        monkeypatch.setenv("NAS_HOST", host)
        assert Settings().is_loopback
