"""Settings read from the environment (prefix ``REHEARSAL_``), never at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError
from engine.netpolicy import parse_allow

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
    cancel_grace_s: float = Field(
        30, gt=0, description="After a cancel or the hard timeout, how long a run may take to stop before it is killed."
    )
    heartbeat_s: float = Field(5, gt=0, description="How often a running run's process renews its lease.")
    lease_expiry_s: float = Field(
        60, gt=0, description="A lease not renewed for this long belongs to a dead process: the run is recovered."
    )
    run_watch_s: float = Field(10, gt=0, description="How often `serve` looks for runs whose process died.")
    max_recoveries: int = Field(3, ge=0, description="Times a run whose process died is resumed before it is failed.")
    max_spend_cap_usd: float = Field(
        10_000, gt=0, description="The highest experiment or judge spend cap a project may be given (USD)."
    )
    workers: int = Field(2, ge=1, description="Ray call-worker actors per run.")
    concurrency: int = Field(64, ge=1, description="Calls in flight per worker.")
    call_timeout_s: float = Field(60, gt=0, description="Timeout of one provider call.")
    max_attempts: int = Field(4, ge=1, description="Attempts per call (429, 5xx, timeouts, malformed bodies).")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles per attempt (0 in tests).")
    embedding_model: str = Field("all-MiniLM-L6-v2", description="Embedder for similarity.")
    webhook_allow_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description=(
            'Webhook targets allowed (JSON list; "*" = any host whose addresses are all public). Hosts, '
            "*.domains, addresses or networks, each with an optional :port; a listed one may be internal."
        ),
    )
    provider_allow_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description=(
            "Base URLs allowed for provider credentials stored through the API (JSON list, same entries as "
            'webhook_allow_hosts; "*" = public hosts only): list a local model server here. The credentials '
            "file is trusted and not checked."
        ),
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

    @field_validator("webhook_allow_hosts", "provider_allow_hosts")
    @classmethod
    def _allow_list(cls, value: list[str], info: ValidationInfo) -> list[str]:
        try:
            parse_allow(value, f"REHEARSAL_{(info.field_name or '').upper()}")
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

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
