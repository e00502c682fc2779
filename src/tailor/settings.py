"""One typed Settings object for the whole of Tailor, read from ``TAILOR_*`` environment variables.

``TAILOR_HOME`` is the single storage root (registry database, artifacts, caches); tests point it at a
temporary directory. Settings are read afresh by :func:`get_settings` so a changed environment is honoured.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Service-wide settings. Every field can be set as ``TAILOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".tailor", description="storage root")
    database_url: str | None = Field(default=None, description="registry database; default SQLite under home")
    max_file_mb: float = Field(default=512.0, gt=0, description="largest input file accepted, in MiB")
    max_text_chars: int = Field(default=20_000, gt=0, description="rows longer than this are dropped as over-long")
    workers: int = Field(default=1, ge=1, le=64, description="job worker processes: jobs that run at once")
    heartbeat_s: float = Field(default=2.0, gt=0, description="how often a worker reports that its job lives")
    heartbeat_timeout_s: float = Field(default=30.0, gt=0,
                                       description="a running job silent this long has lost its worker")
    worker_poll_s: float = Field(default=1.0, gt=0, description="how often idle workers look for queued jobs")
    model_cache_size: int = Field(default=8, ge=1, description="full models the API keeps loaded for inference")
    adapter_cache_size: int = Field(default=10_000, ge=1,
                                    description="head-only and LoRA versions (over a shared base) kept loaded")
    batch_window_ms: float = Field(default=2.0, ge=0, le=1000,
                                   description="how long a classification request waits for others to share its batch")
    batch_max_texts: int = Field(default=64, ge=1, le=4096, description="most texts in one micro-batch")
    batch_queue_texts: int = Field(default=8192, ge=1, description="texts waiting beyond this get 503 (retry)")
    record_predictions: bool = Field(default=True, description="record every inference answer (see tailor.monitor)")
    retention_days: int = Field(default=30, ge=1, description="prediction records older than this are deleted "
                                                              "(a tenant may set its own)")
    retention_rows: int = Field(default=1_000_000, ge=1, description="a tenant's prediction records beyond its newest "
                                                                     "this many are deleted (a tenant may set its own)")
    record_flush_s: float = Field(default=0.5, gt=0, le=60, description="the longest a prediction record waits to be "
                                                                        "written")
    alert_every_s: float = Field(default=60.0, gt=0, description="how often every model's alert rules are judged")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, description="the longest one alert post may take")
    webhook_attempts: int = Field(default=5, ge=1, le=20, description="tries per alert post before it is failed")
    webhook_backoff_s: float = Field(default=1.0, gt=0, description="the wait after a failed post, doubled each try")
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30,
                                         description="how long a web console sign-in lasts")
    console_secure_cookies: bool = Field(default=False, description="mark the console's cookies Secure (set it when "
                                                                    "the server is reached over HTTPS)")
    # Hardening (see tailor.security.hardening): outside development, `tailor serve` refuses insecure values.
    environment: Literal["development", "production"] = Field(
        default="development", description="production refuses to serve without a master key, bound beyond localhost "
                                           "without TLS or a proxy, or with CORS open to every origin")
    master_key: SecretStr | None = Field(default=None, description="the master key (32 random bytes, URL-safe base64)")
    master_key_file: Path | None = Field(default=None, description="a file holding the master key")
    plaintext_dir: Path | None = Field(
        default=None, description="where decrypted copies (models in use, a job's files) are kept while needed: "
                                  "default /dev/shm, memory, so plaintext never reaches a disk; set it where /dev/shm "
                                  "is small (a container's 64 MB) to a directory on an encrypted or memory filesystem")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser origins allowed to call the API (comma-separated; empty: no CORS)")
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="addresses or networks of the reverse proxies whose X-Forwarded-For is "
                                          "believed (comma-separated; '*' for any; empty: none)")
    # Quotas (see tailor.security.quotas; 0 = unlimited; a tenant may have its own: tailor tenants quota).
    # Request rates are off by default so throughput is the machine's; set them on a shared server.
    rate_limit_rpm: int = Field(default=0, ge=0, description="requests per minute of each tenant (0: unlimited)")
    key_rate_limit_rpm: int = Field(default=0, ge=0, description="requests per minute of each API key (0: unlimited)")
    tenant_max_jobs: int = Field(default=20, ge=0, description="fine-tuning jobs a tenant may have queued or running "
                                                               "at once (0: unlimited)")
    tenant_storage_mb: int = Field(default=102_400, ge=0, description="MiB of uploaded files a tenant may keep "
                                                                      "(0: unlimited)")
    tenant_train_minutes_per_day: int = Field(default=0, ge=0, description="minutes of job run time a tenant may use "
                                                                           "per UTC day (0: unlimited)")

    @field_validator("cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """``a,b`` (as an environment variable gives it) or a JSON list → a list of stripped items."""
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        return [str(item).strip() for item in value if str(item).strip()] if isinstance(value, list) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port] (no path), or '*'")
        return origins

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            if proxy != "*":
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise ValueError(f"{proxy!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8), "
                                     "nor '*'") from None
        return proxies

    @property
    def registry_url(self) -> str:
        """The SQLAlchemy URL of the registry database (``postgresql://`` means the psycopg 3 driver)."""
        url = self.database_url or f"sqlite:///{self.home / 'tailor.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


def get_settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()
