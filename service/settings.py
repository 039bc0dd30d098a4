"""The service's settings: one typed class read from ``NAS_*`` environment variables.

Built on demand (``Settings()``), never at import, so a Ray worker that imports a model does
not need the service's environment. Bad or insecure values fail at start-up, not mid-request.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_MIN_TOKEN_LENGTH = 16
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

Role = Literal["admin", "user"]


def fingerprint(token: str) -> str:
    """``token:<sha256 prefix>``: names a token in rows and logs without storing it."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class ApiToken(BaseModel):
    """A bearer token and who holds it. ``user``: acts on its own jobs, devices and exports
    (reads what reads allow); ``admin``: acts on everything. Jobs record ``name`` as owner."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
    token: str = Field(repr=False)
    role: Role = "user"

    @classmethod
    def unnamed(cls, token: str) -> ApiToken:
        """A bare token string (the older setting's form): an admin, named by its fingerprint,
        so the jobs it owned before keep their owner."""
        return cls(name=fingerprint(token), token=token, role="admin")


class Settings(BaseSettings):
    """Every knob of the service; the environment variable is ``NAS_`` + the upper-case name."""

    model_config = SettingsConfigDict(env_prefix="NAS_", extra="ignore", frozen=True)

    data_root: Path = Field(
        default=Path("./data"), description="Dataset directories must lie inside it."
    )
    artifact_dir: Path = Field(
        default=Path("./var/"), description="Checkpoints, latency tables and exported subnets."
    )
    database_url: str = Field(
        default="sqlite:///./var/nas.db",
        description="SQLAlchemy URL: a SQLite file (default) or postgresql+psycopg://...",
    )
    ray_address: str | None = Field(
        default=None,
        description="An existing Ray cluster; unset starts a private Ray bound to 127.0.0.1 "
        "with token authentication.",
    )
    ray_dashboard: bool = Field(
        default=False,
        description="Start Ray's own dashboard (127.0.0.1:8265) beside the local Ray.",
    )
    api_tokens: Annotated[list[ApiToken], NoDecode] = Field(
        default_factory=list,
        description="JSON list of bearer tokens: objects {name, token, role: admin|user}; a "
        "bare string is an admin token named by its fingerprint.",
    )
    reads_require_token: bool = Field(
        default=False, description="Also require a token for reads under /api/v1."
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Largest request body (a latency table upload is the largest).",
    )
    dispatcher_enabled: bool = Field(
        default=True, description="Run queued jobs on Ray; off for an API-only process."
    )
    max_concurrent_jobs: int = Field(
        default=1, ge=1, le=1024, description="Jobs this controller runs at once."
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, le=4096, description="CPUs of the local Ray; unset: all."
    )
    job_lease_s: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="A running job whose controller sent no heartbeat for this long is taken "
        "over (resumed) by another controller.",
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Times a job is started (first run + resumptions) before it is failed.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    share_port: bool = Field(
        default=False,
        description="Bind NAS_PORT with SO_REUSEPORT, so that several API processes (one with "
        "the dispatcher, the others with NAS_DISPATCHER_ENABLED=false) serve one port.",
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(
                    "NAS_API_TOKENS must be a JSON list of tokens, e.g. "
                    '[{"name": "alice", "token": "<token>", "role": "user"}] or ["<token>"]'
                ) from exc
        if isinstance(value, list):
            value = [ApiToken.unnamed(item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        for entry in tokens:
            if len(entry.token) < _MIN_TOKEN_LENGTH or any(c.isspace() for c in entry.token):
                raise ValueError(
                    f"NAS_API_TOKENS: every token needs at least {_MIN_TOKEN_LENGTH} characters "
                    f"and no white space ({entry.name!r} has not; generate one with `python -c "
                    '"import secrets; print(secrets.token_urlsafe(32))"`)'
                )
        names = [entry.name for entry in tokens]
        if len(set(names)) != len(names):
            raise ValueError(f"NAS_API_TOKENS: names must be unique, got {names}")
        if len({entry.token for entry in tokens}) != len(tokens):
            raise ValueError("NAS_API_TOKENS: the same token is listed twice")
        return tokens

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError as exc:
            raise ValueError(f"NAS_DATABASE_URL: not a database URL: {url!r}") from exc
        if backend not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"NAS_DATABASE_URL: backend {backend!r} is not supported; use sqlite or postgresql"
            )
        return url

    @model_validator(mode="after")
    def _refuse_open_network_without_tokens(self) -> Self:
        if not self.is_loopback and not self.api_tokens:
            raise ValueError(
                f"NAS_HOST={self.host} serves beyond this machine; set NAS_API_TOKENS so that "
                "nobody else can submit, cancel or delete jobs"
            )
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
