"""One typed Settings object for the whole of Tailor, read from ``TAILOR_*`` environment variables.

``TAILOR_HOME`` is the single storage root (registry database, artifacts, caches); tests point it at a
temporary directory. Settings are read afresh by :func:`get_settings` so a changed environment is honoured.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service-wide settings. Every field can be set as ``TAILOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".tailor", description="storage root")
    database_url: str | None = Field(default=None, description="registry database; default SQLite under home")
    max_file_mb: float = Field(default=512.0, gt=0, description="largest input file accepted, in MiB")
    max_text_chars: int = Field(default=20_000, gt=0, description="rows longer than this are dropped as over-long")

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
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


def get_settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()
