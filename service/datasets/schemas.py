"""Request and response bodies of ``/datasets``."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.models import DatasetSpec, Frozen, HierarchySpec
from policies.text import Name

POLICY_EXAMPLE = {
    "dataset": {
        "subject": "card_id",
        "identifiers": ["holder_name"],
        "columns": {
            "departement": {"hierarchy": "geo_fr", "level": "departement"},
            "date": {"hierarchy": "time"},
            "age": {"hierarchy": "age_bands"},
            "card_country": {},
            "amount": {"type": "measure"},
        },
    },
    "hierarchies": {"age_bands": {"bands": [5, 10, 20]}},
}


NAME_DESCRIPTION = (
    "unique, ignoring case, spacing and Unicode normalisation (deleted datasets keep theirs)"
)


class DatasetPolicy(Frozen):
    """The dataset's part of a policy: its ``dataset`` block and the custom hierarchies it uses."""

    dataset: DatasetSpec
    hierarchies: dict[str, HierarchySpec] = Field(default_factory=dict)


class SqlSource(BaseModel):
    """A table in a SQL database the service can reach, read once at registration."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (not stored)",
        examples=["postgresql+psycopg://reader@127.0.0.1:5432/bank"],
    )
    table: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?$",
        description="table or schema.table",
        examples=["public.payments"],
    )


class DatasetFromSql(BaseModel):
    """Register a dataset from a SQL table: a snapshot, checked and encrypted like an upload."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description=NAME_DESCRIPTION)
    description: str | None = Field(default=None, max_length=2000)
    policy: DatasetPolicy
    source: SqlSource
    hierarchy_files: dict[str, str] = Field(
        default_factory=dict, description="ARX files the policy names: file name → CSV text"
    )


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    spec: dict[str, Any] = Field(description="the policy's `dataset` block")
    hierarchies: dict[str, Any]
    file_format: str
    size_bytes: int
    row_count: int
    columns: dict[str, str] = Field(description="column → stored type")
    fingerprint: str = Field(description="SHA-256 of the uploaded file")
    created_at: datetime.datetime
