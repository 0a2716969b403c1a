"""The microdata policy: what a release generalizes, which models protect it, how it is searched.

Frozen pydantic models that validate themselves when built; the policies package reuses them for
agreements of kind ``microdata``. Paths to hierarchy files are kept as given (relative paths are
resolved by the caller against the policy file's folder).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anonymization.errors import invalid_field
from anonymization.fields import Distinct
from anonymization.protection import MAX_K

MAX_POPULATION = 10**10
Metric = Literal["loss", "discernibility", "average_class_size", "entropy"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class BandsSpec(_Frozen):
    """Numeric bands of growing widths, each a multiple of the last: ``{bands: [5, 10, 20]}``."""

    bands: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...] = Field(min_length=1)


class FileSpec(_Frozen):
    """An ARX hierarchy file with optional level names: ``{file: path, levels: [names]}``."""

    file: str
    levels: tuple[str, ...] | None = None


HierarchySpec = str | BandsSpec | FileSpec


class ColumnSpec(_Frozen):
    """A column of the dataset and the hierarchy that generalizes it."""

    hierarchy: str | None = None


class DatasetSpec(_Frozen):
    """The dataset's roles: the subject (pseudonymized), identifiers (dropped), other columns."""

    subject: str | None = None
    identifiers: tuple[str, ...] = ()
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)


class LDiversitySpec(_Frozen):
    """l-diversity of each sensitive attribute in every class (distinct, entropy or recursive)."""

    kind: Literal["distinct", "entropy", "recursive"] = "distinct"
    l: int = Field(ge=2, le=MAX_K, strict=True)  # noqa: E741 - the model's name in the literature
    c: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)

    @model_validator(mode="after")
    def _recursive_needs_c(self) -> LDiversitySpec:
        if self.kind == "recursive" and self.c is None:
            raise ValueError("recursive (c,l)-diversity needs c")
        return self


class TClosenessSpec(_Frozen):
    """t-closeness: every class's sensitive distribution within ``max`` of the whole table's."""

    max: float = Field(gt=0, le=1, strict=True)
    distance: Literal["equal", "hierarchical", "ordered"] = "equal"


class ProtectionSpec(_Frozen):
    """The privacy models every released class satisfies, and the share of records suppressible."""

    k: int = Field(
        default=2, ge=2, le=MAX_K, strict=True, description="at least 2: k = 1 protects nothing"
    )
    l: LDiversitySpec | None = None  # noqa: E741
    t: TClosenessSpec | None = None
    suppression_limit: float = Field(default=0.0, ge=0, lt=1, strict=True)

    def suppressible(self, records: int) -> int:
        """How many of ``records`` may be suppressed."""
        return math.floor(self.suppression_limit * records + 1e-9)


class RiskSpec(_Frozen):
    """Risk report settings: the per-record risk threshold and the population size, if known."""

    threshold: float = Field(default=0.2, gt=0, le=1, strict=True)
    population: int | None = Field(default=None, ge=1, le=MAX_POPULATION, strict=True)


class QuasiIdentifierSpec(_Frozen):
    """A quasi-identifier of the release; its hierarchy defaults to the dataset column's."""

    hierarchy: str | None = None


class MicrodataRelease(_Frozen):
    """The ``release`` block: quasi-identifiers, sensitive attributes, protection, algorithm."""

    kind: Literal["microdata"] = "microdata"
    quasi_identifiers: dict[str, QuasiIdentifierSpec] = Field(min_length=1)
    sensitive: Annotated[tuple[str, ...], Distinct] = ()
    protection: ProtectionSpec = ProtectionSpec()
    algorithm: Literal["optimal", "mondrian"] = "optimal"
    metric: Metric = "loss"
    risk: RiskSpec = RiskSpec()

    @model_validator(mode="after")
    def _models_need_sensitive(self) -> MicrodataRelease:
        if (self.protection.l or self.protection.t) and not self.sensitive:
            raise ValueError("l-diversity and t-closeness need at least one sensitive attribute")
        overlap = set(self.sensitive) & set(self.quasi_identifiers)
        if overlap:
            raise ValueError(f"{sorted(overlap)} cannot be both quasi-identifier and sensitive")
        return self


class MicrodataPolicy(_Frozen):
    """A whole policy file: the dataset's roles, the named hierarchies and the release."""

    dataset: DatasetSpec = DatasetSpec()
    hierarchies: dict[str, HierarchySpec] = Field(default_factory=dict)
    release: MicrodataRelease

    @model_validator(mode="after")
    def _names_resolve(self) -> MicrodataPolicy:
        for column in self.release.quasi_identifiers:
            name = self.hierarchy_name(column)
            if name is not None and name not in self.hierarchies:
                raise ValueError(f"quasi-identifier {column!r} names unknown hierarchy {name!r}")
        for column, declared in self.dataset.columns.items():
            if declared.hierarchy is not None and declared.hierarchy not in self.hierarchies:
                raise ValueError(
                    f"column {column!r} names hierarchy {declared.hierarchy!r}, which "
                    f"`hierarchies` does not declare"
                )
        dropped = set(self.dataset.identifiers) | {self.dataset.subject}
        released = set(self.release.quasi_identifiers) | set(self.release.sensitive)
        if dropped & released:
            raise ValueError(f"{sorted(str(c) for c in dropped & released)} are identifiers")
        return self

    def hierarchy_name(self, column: str) -> str | None:
        """The hierarchy a column is generalized with: the release's choice, else the dataset's."""
        spec = self.release.quasi_identifiers.get(column)
        if spec is not None and spec.hierarchy:
            return spec.hierarchy
        declared = self.dataset.columns.get(column)
        return declared.hierarchy if declared else None


def parse_policy(document: object) -> MicrodataPolicy:
    """Validate a parsed policy document; every problem becomes one InvalidRequest."""
    try:
        return MicrodataPolicy.model_validate(document)
    except ValidationError as error:
        raise invalid_field(error, default="policy", code="invalid_policy") from None
