"""The service's settings: one pydantic-settings object, read from ``PARTAGE_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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
    port: int = 8000
    require_postgres: bool = False
    postgres_admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (a dependency, so tests can override it)."""
    return Settings()
