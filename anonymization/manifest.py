"""What the audit reads of a release's manifest, checked field by field: neither the manifest nor
the table is trusted by the audit from the files alone (:mod:`anonymization.reaudit`)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from anonymization.errors import invalid_field


class ManifestBounds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lower: FiniteFloat | None
    upper: FiniteFloat | None


class ManifestCell(BaseModel):
    """One suppressed cell of the manifest's audit: its key, its reason and, per quantity
    (``subjects``, each sum), its interval."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, ManifestBounds] = Field(init=False)
    key: dict[StrictStr, StrictStr]
    reason: StrictStr | None = None


class _Stated(BaseModel):
    """The requirement the manifest's audit says it proved."""

    model_config = ConfigDict(frozen=True)
    subjects_width: StrictInt = Field(ge=1)
    sum_percent: FiniteFloat = Field(gt=0, lt=100)


class _Audit(BaseModel):
    model_config = ConfigDict(frozen=True)
    requirement: _Stated | None = None
    additive_dimensions: list[StrictStr]
    nonnegative: list[StrictStr]
    passed: StrictBool = True
    cells: list[ManifestCell]
    held_releases: StrictInt = Field(default=0, ge=0)


class _Interval(BaseModel):
    model_config = ConfigDict(frozen=True)
    p: FiniteFloat = Field(default=15.0, gt=0, lt=100)


class _Noise(BaseModel):
    model_config = ConfigDict(frozen=True)
    max: FiniteFloat = Field(default=0.0, ge=0)


class ManifestProtection(BaseModel):
    model_config = ConfigDict(frozen=True)
    k: StrictInt = Field(ge=1)
    interval: _Interval = _Interval()
    noise: _Noise | None = None


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True)
    subject: StrictStr | None = None
    dimensions: dict[StrictStr, StrictStr]
    measures: list[StrictStr]
    filters: dict[StrictStr, object] = Field(default_factory=dict)
    totals: StrictBool
    protection: ManifestProtection


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True)
    digest: StrictStr | None = None


class _Dataset(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: StrictStr | None = None


class _Sha(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    format: Literal["csv", "parquet", "json"]


class Manifest(BaseModel):
    """What the audit reads of a release's manifest (other fields are left alone)."""

    model_config = ConfigDict(frozen=True)
    plan: _Plan
    audit: _Audit
    input: _Input | None = None  # an offline release: the data file's digest
    dataset: _Dataset | None = None  # a release of the service: the dataset's id
    output: _Output | None = None  # an offline release: its one file
    outputs: dict[Literal["csv", "parquet", "json"], _Sha] | None = None  # the service's files
    # What the manifest says of the table (the engine writes every one; checked against it).
    cells: StrictInt = Field(ge=0)
    released: StrictInt = Field(ge=0)
    suppressed: StrictInt = Field(ge=0)
    suppressed_by_reason: dict[StrictStr, StrictInt]
    complements: StrictInt = Field(ge=0)

    @property
    def data(self) -> tuple[str, str] | None:
        """What the release was made from, as (field, value): the data file's digest, or the
        service's dataset."""
        if self.input is not None and self.input.digest:
            return "input.digest", self.input.digest
        if self.dataset is not None and self.dataset.id:
            return "dataset.id", self.dataset.id
        return None

    @property
    def dims(self) -> list[str]:
        """The dimension columns, in order."""
        return list(self.plan.dimensions)

    @property
    def population(self) -> str:
        """The population the release counts: its subject and filters, as canonical JSON (the
        engine ties held releases to a new one only when they count the same population)."""
        return json.dumps([self.plan.subject, self.plan.filters], sort_keys=True)


def read_manifest(document: object) -> Manifest:
    """The parts of a manifest the audit reads, checked: a malformed one is an InvalidRequest
    naming the field (``manifest.plan.protection.k``)."""
    try:
        return Manifest.model_validate(document)
    except ValidationError as error:
        raise invalid_field(error, "manifest") from None
