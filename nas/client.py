"""A Python client of the nas-service REST API (``/api/v1``), on httpx only.

Usable without the service installed (this package never imports ``service`` or
``workers``): submit a job, follow it, read its fronts and subnets, specialise, fine-tune a
subnet, download.

    with Client("http://127.0.0.1:8000", token="...") as nas:
        job = nas.watch(nas.submit("examples/digits-ofa.yaml")["id"])
        front = nas.front(job["id"], "host-cpu-onnxruntime")
        nas.download(front["best_subnet_id"], "onnx", "best.onnx")

Every refusal of the service becomes a ``ClientError`` with the HTTP status, the service's
message and the field at fault (from its JSON error body).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

from nas.config_file import ConfigFileError, load_mapping

#: Where ``service.settings.Settings`` listens by default (NAS_HOST, NAS_PORT).
_DEFAULT_HOST, _DEFAULT_PORT = "127.0.0.1", 8000
FINAL_STATES = ("succeeded", "failed", "cancelled")
#: Files made on demand (``export``) ...
EXPORT_FORMATS = ("onnx", "torchscript", "pytorch")
#: ... and what can be downloaded: those, and the fine-tuned weights (made by the finetuning
#: stage, or by ``finetune``: not an export).
DOWNLOAD_FORMATS = (*EXPORT_FORMATS, "finetuned")
#: An export's weights: the fine-tuned ones or the supernet's (by default the subnet's own).
WEIGHTS = ("finetuned", "inherited")
#: Specialising (a short evolution, a table profiled on first use) and exporting on demand
#: take longer than a read; these calls wait at least this long.
SLOW_CALL_TIMEOUT_S = 600.0

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class ClientError(Exception):
    """The service refused a request (``status`` >= 400) or could not be reached
    (``status`` 0). ``field`` names the input at fault when the service said which."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field and field not in message else message)
        self.status, self.message, self.field = status, message, field


def _error_from(response: httpx.Response) -> ClientError:
    """The service's error body (``{"detail": str}`` or a 422's field list) as an exception."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail:  # a 422: every field at fault
        first = detail[0] if isinstance(detail[0], dict) else {}
        message = body.get("message") or "; ".join(str(d.get("msg", d)) for d in detail)
        return ClientError(response.status_code, str(message), first.get("field"))
    if isinstance(detail, str) and detail:
        return ClientError(response.status_code, detail)
    text = response.text.strip()[:300] or response.reason_phrase
    return ClientError(response.status_code, f"HTTP {response.status_code}: {text}")


def _load_spec(spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A job spec as a mapping, or read from a YAML or JSON file."""
    if isinstance(spec, Mapping):
        return dict(spec)
    try:
        return load_mapping(spec, expected="a mapping (name, space, ...)")
    except ConfigFileError as exc:
        raise ValueError(f"spec: {exc}") from None


def default_url(environ: Mapping[str, str] = os.environ) -> str:
    """``NAS_URL``, else the service that ``make run`` / ``nas serve`` start in the same
    environment (``NAS_HOST``, ``NAS_PORT``), so a CLI run beside the service finds it.

    A wildcard host (0.0.0.0, ::) listens on every address; a client connects to loopback.
    """
    if environ.get("NAS_URL"):
        return environ["NAS_URL"]
    host = environ.get("NAS_HOST") or _DEFAULT_HOST
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    port = environ.get("NAS_PORT") or str(_DEFAULT_PORT)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"url: NAS_PORT={port!r} is not a port (1-65535); or set NAS_URL")
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
    return f"http://{bracketed}:{int(port)}"


class Client:
    """One connection to a nas-service; use it as a context manager (or call ``close``).

    ``url`` and ``token`` default to ``default_url()`` (NAS_URL, else NAS_HOST:NAS_PORT, else
    http://127.0.0.1:8000) and ``NAS_TOKEN``. A token is never sent over plain http to
    another machine.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 30.0
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        token = token if token is not None else os.environ.get("NAS_TOKEN") or None
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: {self.url!r} must be an http:// or https:// URL with a host")
        if token and parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError(
                f"url: {self.url!r} is plain http to another machine; use https so the token "
                "is not sent in the clear"
            )
        if timeout <= 0:
            raise ValueError(f"timeout: must be > 0 seconds, got {timeout}")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    # --- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ClientError(0, f"{self.url}{path} did not answer in time") from None
        except httpx.TransportError as exc:
            raise ClientError(
                0, f"cannot reach {self.url}: {exc}; is the service running?"
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    # --- service and jobs -------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Status, version and database state (also when the service says it is degraded)."""
        try:
            response = self._http.get("/health")
        except httpx.TransportError as exc:
            raise ClientError(
                0, f"cannot reach {self.url}: {exc}; is the service running?"
            ) from None
        if response.status_code not in (200, 503):
            raise _error_from(response)
        return response.json()

    def submit(
        self, spec: Mapping[str, Any] | str | Path, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue a job (a ``JobCreate`` body, or a YAML/JSON file holding one); the job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/api/v1/jobs", json=_load_spec(spec), headers=headers)

    def jobs(
        self, state: str | list[str] | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """A page of jobs, newest first: ``{"data", "count", "limit", "offset"}``."""
        states = [state] if isinstance(state, str) else list(state or [])
        params: list[tuple[str, str | int]] = [("limit", limit), ("offset", offset)]
        params += [("state", s) for s in states]
        return self._json("GET", "/api/v1/jobs", params=params)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{int(job_id)}/cancel")

    def delete(self, job_id: int) -> None:
        self._send("DELETE", f"/api/v1/jobs/{int(job_id)}")

    def logs(self, job_id: int, after: int = 0, limit: int = 200) -> dict[str, Any]:
        """Log lines after the cursor ``after``: ``{"data", "next_after"}``."""
        params = {"after": after, "limit": limit}
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}/logs", params=params)

    def watch(
        self,
        job_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll a job until it succeeds, fails or is cancelled; the final job.
        ``on_progress`` sees the job after every poll (the last one included)."""
        return _poll(
            lambda: self.job(job_id),
            lambda job: job["state"] in FINAL_STATES,
            what=f"job {job_id}",
            on_each=on_progress,
            poll_s=poll_s,
            timeout_s=timeout_s,
        )

    # --- results ----------------------------------------------------------------------------

    def fronts(self, job_id: int) -> list[dict[str, Any]]:
        """The job's Pareto fronts, one per device."""
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}/fronts")["data"]

    def front(self, job_id: int, device: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}/fronts/{quote(device, safe='')}")

    def subnets(self, job_id: int, **filters: Any) -> dict[str, Any]:
        """A page of the job's subnets. Filters: ``sort`` (accuracy, macs, params, latency),
        ``order``, ``device``, ``min_accuracy``, ``max_macs``, ``max_latency_ms``,
        ``on_front``, ``limit``, ``offset``."""
        params = {
            key: (str(value).lower() if isinstance(value, bool) else value)
            for key, value in filters.items()
            if value is not None
        }
        return self._json("GET", f"/api/v1/jobs/{int(job_id)}/subnets", params=params)

    def subnet(self, subnet_id: int) -> dict[str, Any]:
        """One subnet with its latencies, files and fronts."""
        return self._json("GET", f"/api/v1/subnets/{int(subnet_id)}")

    def specialize(
        self,
        job_id: int,
        device: str,
        latency_ms: float | None = None,
        macs: int | None = None,
    ) -> dict[str, Any]:
        """The most accurate subnet of a succeeded job for ``device`` under one budget:
        ``{"subnet", "device", "budget", "seconds"}``."""
        if (latency_ms is None) == (macs is None):
            raise ValueError("latency_ms: give exactly one of latency_ms or macs")
        body: dict[str, Any] = {"device": device}
        body.update({"latency_ms": latency_ms} if latency_ms is not None else {"macs": macs})
        return self._json(
            "POST",
            f"/api/v1/jobs/{int(job_id)}/specialize",
            json=body,
            timeout=max(self.timeout, SLOW_CALL_TIMEOUT_S),
        )

    def export(
        self,
        subnet_id: int,
        format: str = "onnx",
        *,
        weights: str | None = None,
        timeout_s: float = SLOW_CALL_TIMEOUT_S,
        poll_s: float = 0.5,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Make sure the subnet's file in ``format`` exists, with ``weights`` (``finetuned``
        or ``inherited``; None: the subnet's own): ask for the export (a token's work, queued
        by the service) when it does not, and wait until it is ``ready``."""
        if format not in EXPORT_FORMATS:
            raise ValueError(f"format: {format!r}; allowed values: {list(EXPORT_FORMATS)}")
        asked = _weights(weights)
        status_path = f"/api/v1/subnets/{int(subnet_id)}/exports/{format}"
        status = self._json("GET", status_path, params=asked)
        if status["state"] != "ready":
            status = self._json(
                "POST",
                f"/api/v1/subnets/{int(subnet_id)}/exports",
                json={"format": format, **asked},
            )
        deadline = time.monotonic() + timeout_s
        while status["state"] in ("queued", "running"):
            if on_state is not None:
                on_state(status)
            if time.monotonic() >= deadline:
                raise ClientError(
                    0,
                    f"subnet {subnet_id}'s {format} export is still "
                    f"{status['state']} after {timeout_s:.0f} s",
                )
            time.sleep(poll_s)
            status = self._json("GET", status_path, params=asked)
        if status["state"] != "ready":
            raise ClientError(
                409,
                status.get("error") or f"subnet {subnet_id}'s {format} export {status['state']}",
            )
        return status

    def finetune(
        self,
        subnet_id: int,
        *,
        samples: int | None = None,
        max_epochs: int | None = None,
        grace_epochs: int | None = None,
        distill: bool | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Ask the service to fine-tune a subnet of a succeeded job (a token's work, queued:
        minutes of Ray Tune trials); its task, ``state`` ``queued`` or ``running``, or
        ``succeeded`` with both accuracies when it was fine-tuned already. A setting left
        None is the job's own. Follow it with ``wait_finetune``."""
        given = {
            "samples": samples,
            "max_epochs": max_epochs,
            "grace_epochs": grace_epochs,
            "distill": distill,
            "seed": seed,
        }
        body = {key: value for key, value in given.items() if value is not None}
        return self._json("POST", f"/api/v1/subnets/{int(subnet_id)}/finetune", json=body)

    def finetune_status(self, subnet_id: int) -> dict[str, Any]:
        """Where the subnet's fine-tuning stands: ``state``, ``progress`` (0-1), and once
        ``succeeded`` ``inherited_accuracy`` and ``finetuned_accuracy`` (measured on val)."""
        return self._json("GET", f"/api/v1/subnets/{int(subnet_id)}/finetune")

    def cancel_finetune(self, subnet_id: int) -> dict[str, Any]:
        """Cancel the subnet's queued or running fine-tuning (``cancel_requested`` while its
        trials stop; ``wait_finetune`` then ends in ``cancelled``)."""
        return self._json("DELETE", f"/api/v1/subnets/{int(subnet_id)}/finetune")

    def wait_finetune(
        self,
        subnet_id: int,
        *,
        timeout_s: float | None = None,
        poll_s: float = 1.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the subnet's fine-tuning until it is no longer queued or running; its final
        status (``succeeded``, ``failed`` with ``error``, or ``cancelled``). ``on_state``
        sees every status polled, the last one included."""
        return _poll(
            lambda: self.finetune_status(subnet_id),
            lambda status: status["state"] not in ("queued", "running"),
            what=f"subnet {subnet_id}'s fine-tuning",
            on_each=on_state,
            poll_s=poll_s,
            timeout_s=timeout_s,
        )

    def download(
        self,
        subnet_id: int,
        format: str = "onnx",
        dest: str | Path = ".",
        *,
        weights: str | None = None,
    ) -> Path:
        """Save a subnet's file (``onnx``, ``torchscript``, ``pytorch`` or ``finetuned``, the
        fine-tuned state dict) at ``dest`` (a file, or a directory to keep the service's file
        name); the path. ``weights``: an export's, ``finetuned`` or ``inherited`` (None: the
        subnet's own). An export not made yet is made first (``export``: needs a token).
        The bytes are checked against the service's ``X-Checksum-SHA256`` before the file
        appears."""
        if format not in DOWNLOAD_FORMATS:
            raise ValueError(f"format: {format!r}; allowed values: {list(DOWNLOAD_FORMATS)}")
        asked = _weights(weights)
        if format in EXPORT_FORMATS:
            self.export(subnet_id, format, weights=weights)
        path = f"/api/v1/subnets/{int(subnet_id)}/download"
        timeout = max(self.timeout, SLOW_CALL_TIMEOUT_S)
        try:
            with self._http.stream(
                "GET", path, params={"format": format, **asked}, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                return self._save(response, subnet_id, format, Path(dest))
        except httpx.TimeoutException:
            raise ClientError(0, f"{self.url}{path} did not answer in time") from None
        except httpx.TransportError as exc:
            raise ClientError(
                0, f"cannot reach {self.url}: {exc}; is the service running?"
            ) from None

    def _save(self, response: httpx.Response, subnet_id: int, format: str, dest: Path) -> Path:
        expected = response.headers.get("x-checksum-sha256", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise ClientError(response.status_code, "the answer has no X-Checksum-SHA256 header")
        if dest.is_dir():
            dest = dest / _filename(response, subnet_id, format)
        partial = dest.with_name(f".{dest.name}.partial")
        digest = hashlib.sha256()
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                raise ClientError(
                    response.status_code,
                    f"checksum mismatch: got sha256 {digest.hexdigest()}, the service sent "
                    f"{expected}; the file was not saved",
                )
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest


def _poll(
    read: Callable[[], dict[str, Any]],
    ended: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    on_each: Callable[[dict[str, Any]], None] | None,
    poll_s: float,
    timeout_s: float | None,
) -> dict[str, Any]:
    """``read()`` every ``poll_s`` seconds until ``ended`` says so; the last answer.
    ``on_each`` sees every answer; ``TimeoutError`` (naming ``what``) after ``timeout_s``."""
    if poll_s <= 0:
        raise ValueError(f"poll_s: must be > 0 seconds, got {poll_s}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        answer = read()
        if on_each is not None:
            on_each(answer)
        if ended(answer):
            return answer
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"{what} still {answer['state']} after {timeout_s:g} s")
        time.sleep(poll_s)


def _weights(weights: str | None) -> dict[str, str]:
    """The ``weights`` field or query parameter of an export's calls: none for the subnet's
    own."""
    if weights is not None and weights not in WEIGHTS:
        raise ValueError(f"weights: {weights!r}; allowed values: {list(WEIGHTS)}")
    return {} if weights is None else {"weights": weights}


def _filename(response: httpx.Response, subnet_id: int, format: str) -> str:
    """The service's file name when it is a plain one, else ``subnet-<id>.<format>``."""
    found = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
    if found and _SAFE_FILENAME.fullmatch(found.group(1)):
        return found.group(1)
    return f"subnet-{subnet_id}.{format}"
