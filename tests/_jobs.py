"""Helpers for tests that run whole jobs through the REST API."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

FINAL_STATES = ("succeeded", "failed", "cancelled")


def wait_finished(client: TestClient, job_id: int, timeout: float = 300.0) -> dict[str, Any]:
    """The job once it reached a final state; the test fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in FINAL_STATES:
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not finish within {timeout:.0f} s")
