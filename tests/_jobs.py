"""Helpers for tests that run whole jobs through the REST API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

FINAL_STATES = ("succeeded", "failed", "cancelled")


def wait_until(what: str, check: Callable[[], Any], timeout: float = 300.0) -> Any:
    """``check()``'s first truthy value; the test fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_finished(client: TestClient, job_id: int, timeout: float = 300.0) -> dict[str, Any]:
    """The job once it reached a final state; the test fails after ``timeout`` seconds."""

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in FINAL_STATES else None

    return wait_until(f"job {job_id} to finish", finished, timeout)


def exported(
    client: TestClient, subnet_id: int, fmt: str, headers: dict[str, str], timeout: float = 120.0
) -> dict[str, Any]:
    """Ask the service to export a subnet's file (POST, queued) and wait until it is ready."""
    asked = client.post(
        f"/api/v1/subnets/{subnet_id}/exports", json={"format": fmt}, headers=headers
    )
    assert asked.status_code in (200, 202), asked.text

    def ready() -> dict[str, Any] | None:
        status = client.get(f"/api/v1/subnets/{subnet_id}/exports/{fmt}").json()
        assert status["state"] != "failed", status
        return status if status["state"] == "ready" else None

    return wait_until(f"subnet {subnet_id}'s {fmt} export", ready, timeout)
