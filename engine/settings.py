"""Settings read from the environment (prefix ``REHEARSAL_``), never at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository's ``configs/`` folder, where the shipped catalogs live.
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


class Settings(BaseSettings):
    """Where rehearsal keeps its state and finds its inputs."""

    model_config = SettingsConfigDict(env_prefix="REHEARSAL_", extra="ignore")

    home: Path = Field(Path(".rehearsal"), description="SQLite metadata and Parquet results.")
    logs: str | None = Field(None, description="Log-store root (path or s3:// URI); defaults to $REHEARSAL_HOME/logs.")
    pricing: Path = Field(CONFIGS_DIR / "pricing.yaml", description="Pricing and latency catalog.")
    credentials: Path = Field(CONFIGS_DIR / "credentials.yaml", description="Provider credentials by id.")

    @property
    def logs_root(self) -> str:
        """The log-store root as a string (a local path or an ``s3://`` URI)."""
        return self.logs if self.logs else str(self.home / "logs")

    @property
    def db_path(self) -> Path:
        """The SQLite metadata file."""
        return self.home / "rehearsal.db"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
