"""Settings read from the environment (prefix ``REHEARSAL_``), never at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
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
    sample_min: int = Field(1000, ge=1, description="Smallest sample.size a with-responses run may request.")
    sample_max: int = Field(50_000, ge=1, description="Largest sample.size a with-responses run may request.")
    run_timeout_s: float = Field(1800, gt=0, description="Hard timeout of one experiment or judge run.")
    workers: int = Field(2, ge=1, description="Ray call-worker actors per run.")
    concurrency: int = Field(64, ge=1, description="Calls in flight per worker.")
    call_timeout_s: float = Field(60, gt=0, description="Timeout of one provider call.")
    max_attempts: int = Field(4, ge=1, description="Attempts per call (429, 5xx, timeouts, malformed bodies).")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles per attempt (0 in tests).")
    embedding_model: str = Field("all-MiniLM-L6-v2", description="Embedder for similarity.")
    webhook_allow_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Webhook target hosts allowed (JSON list; "*" = any public host; internal ones must be listed).',
    )
    webhook_backoff_s: float = Field(30, gt=0, description="Wait before the first webhook retry; doubles per attempt.")
    webhook_dispatch_s: float = Field(5, gt=0, description="How often the service looks for deliveries that are due.")
    secret_key: SecretStr | None = Field(
        None,
        description=(
            "Fernet keys (comma-separated; the first encrypts, all decrypt) for provider API keys and webhook "
            "secrets at rest. Unset: $REHEARSAL_HOME/secret.key, generated on first use (embedded installs only)."
        ),
    )

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
