"""The service's settings: one pydantic-settings object, read from ``PARTAGE_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="PARTAGE_", extra="ignore")

    database_url: str = "sqlite:///./var/partage.db"
    data_dir: Path = Path("./var/data")
    keys_dir: Path = Path("./var/keys")
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    token_issuer: str = "partage"  # noqa: S105 (an issuer name, not a secret)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    require_postgres: bool = False
    postgres_admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    # A retired signing key stays in the JWKS this long, so older manifests still verify.
    signing_key_publish_days: int = Field(default=3650, ge=1)
    # Extract jobs: threads running releases, attempts before a job interrupted by a crash
    # is marked failed, and how often the worker loop polls, expires releases and signs the
    # audit log's head.
    workers: int = Field(default=2, ge=1, le=64)
    job_attempts: int = Field(default=2, ge=1, le=10)
    # A job still computing after this long fails with `time_limit` (frees the partner's queue).
    job_time_limit_seconds: float = Field(default=900.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    expiry_sweep_seconds: float = Field(default=300.0, gt=0)
    audit_sign_seconds: float = Field(default=60.0, gt=0)
    # Requests per client: a token bucket refilled at `rate_limit_per_second` up to `burst`.
    rate_limit_per_second: float = Field(default=10.0, gt=0)
    rate_limit_burst: int = Field(default=60, ge=1)
    # Token requests (each runs argon2): every attempt per remote address, and failed ones per
    # (client id, address), so failing on a client's id elsewhere cannot lock it out.
    token_attempts_per_second: float = Field(default=1.0, gt=0)
    token_attempts_burst: int = Field(default=20, ge=1)
    token_failures_per_minute: float = Field(default=1.0, gt=0)
    token_failures_burst: int = Field(default=10, ge=1)

    @field_validator("data_dir", "keys_dir")
    @classmethod
    def _a_directory(cls, folder: Path) -> Path:
        """A folder, or a path where one can be made (not a file, nor under one)."""
        existing = folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"{existing} is not a directory")
        return folder


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (a dependency, so tests can override it)."""
    return Settings()
