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
