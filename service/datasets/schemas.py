"""Request and response bodies of ``/datasets``."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.models import DatasetSpec, Frozen, HierarchySpec

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


class DatasetPolicy(Frozen):
    """The dataset's part of a policy: its ``dataset`` block and the custom hierarchies it uses."""

    dataset: DatasetSpec
    hierarchies: dict[str, HierarchySpec] = Field(default_factory=dict)


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
