"""Sending a finished table to a nas-service: ``POST {url}/api/v1/devices/{device}/latency-tables``.

Runs on the profiled device, so every failure becomes one ``UploadError`` sentence that says
what to do; the table file stays on disk whatever happens. A bearer token is never sent over
plain HTTP except to this machine.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from nas.hardware.table import LatencyTable

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class UploadError(RuntimeError):
    """The table could not be delivered; the message says why."""


def upload_url(base_url: str, device: str) -> str:
    """The endpoint for ``device`` under ``base_url``; ``ValueError`` names a bad URL."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: {base_url!r} must be an http:// or https:// URL with a host")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError(
            f"url: {base_url!r} is plain http to another machine; use https so the token "
            "is not sent in the clear"
        )
    return f"{base_url.rstrip('/')}/api/v1/devices/{device}/latency-tables"


def upload_table(
    table: LatencyTable, base_url: str, token: str, *, timeout_s: float = 30.0
) -> dict[str, object]:
    """Post ``table`` as JSON; returns the service's JSON answer (or ``{}``)."""
    if not token.strip():
        raise ValueError("token: must not be empty")
    url = upload_url(base_url, table.device.name)
    try:
        response = httpx.post(
            url,
            content=table.model_dump_json(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout_s,
        )
    except httpx.TimeoutException:
        raise UploadError(f"{url} did not answer within {timeout_s:g} s; try again") from None
    except httpx.TransportError as exc:
        raise UploadError(f"cannot reach {url}: {exc}; is the service running?") from None
    if response.status_code in (401, 403):
        raise UploadError(f"{url} refused the token (HTTP {response.status_code})")
    if response.status_code in (404, 405):
        raise UploadError(
            f"{url} has no latency-table endpoint (HTTP {response.status_code}); "
            "the service may be older than this client"
        )
    if response.status_code >= 400:
        detail = response.text[:300].strip()
        raise UploadError(f"{url} refused the table (HTTP {response.status_code}): {detail}")
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"response": body}
