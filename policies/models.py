"""The policy format: what a dataset holds (roles, hierarchies) and what may be released from it.

The same models back the policy files of the CLI and the JSON bodies of the service. They check
their own shape when built; checks that need two blocks together (a release against its
dataset) live in :func:`Policy.check`.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from anonymization.bands import BandHierarchy
from anonymization.errors import HierarchyError, InvalidRequest
from anonymization.fields import Distinct
from anonymization.hierarchies import (
    CategoricalHierarchy,
    Hierarchy,
    TimeHierarchy,
    builtin,
    load_arx_csv,
)
from anonymization.plan import Aggregate
from anonymization.protection import Protection, ProtectionSpec

Role = Literal["dimension", "time", "measure", "quasi_identifier", "sensitive"]
OutputFormat = Literal["csv", "parquet", "json"]
FORMATS: tuple[OutputFormat, ...] = ("csv", "parquet", "json")
AGGREGATES: tuple[Aggregate, ...] = ("sum", "mean", "count")
# Product bounds of a policy's counts (each also within RFC 8785's safe integers: it is signed).
MAX_CELLS = 1_000_000_000
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day_only(value: Any) -> Any:
    """A day as a date or ``YYYY-MM-DD`` text: not a timestamp, nor a number of seconds."""
    if isinstance(value, datetime.datetime) or not isinstance(value, str | datetime.date):
        raise ValueError("a day is written YYYY-MM-DD")
    if isinstance(value, str) and not DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


def _code(value: Any) -> Any:
    """A value of a filter is text; an integer (a code unquoted in YAML: 74) is its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("a value is text (or an integer, read as its decimal digits)")
    return value


Day = Annotated[datetime.date, BeforeValidator(_day_only)]


class Frozen(BaseModel):
    """Base of every policy model: immutable, unknown keys refused."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


class ColumnSpec(Frozen):
    """A column's role and, for dimensions, its hierarchy and the level its values are at."""

    role: Role = Field(default="dimension", alias="type")
    hierarchy: str | None = None
    level: str | None = Field(
        default=None, description="level of the stored values (default finest)"
    )


class DatasetSpec(Frozen):
    """The ``dataset`` block: the protected subject, direct identifiers, and column roles."""

    subject: str = Field(
        min_length=1, description="the protected entity: counts are distinct subjects"
    )
    identifiers: list[str] = Field(default_factory=list, description="never released nor usable")
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _roles_are_disjoint(self) -> DatasetSpec:
        if self.subject in self.identifiers:
            raise ValueError(f"subject {self.subject!r} cannot also be an identifier")
        for name in (self.subject, *self.identifiers):
            if name in self.columns:
                raise ValueError(
                    f"column {name!r} is the subject or an identifier; do not list it in columns"
                )
        return self


class HierarchyFile(Frozen):
    """A custom ladder in ARX CSV format, with optional level names."""

    file: str
    levels: list[str] | None = None
    delimiter: str = Field(default=";", min_length=1, max_length=1)


class BandSpec(Frozen):
    """Numeric bands of growing widths, each a multiple of the previous one."""

    # The widths themselves (finite, in range, each a multiple of the last) are checked by
    # BandHierarchy, which names ``hierarchies.<name>.bands``: a constraint here would fail the
    # union and name its first alternative (``hierarchies.<name>.str``) instead.
    bands: list[float] = Field(min_length=1)


HierarchySpec = str | HierarchyFile | BandSpec


class ReleaseSpec(Frozen):
    """The ``release`` block: dimensions at their finest level, measures, filters, protection."""

    kind: Literal["aggregate"] = "aggregate"
    dimensions: dict[str, str] = Field(min_length=1, description="column → finest level allowed")
    measures: dict[str, Annotated[list[Aggregate], Distinct]] = Field(default_factory=dict)
    filters: Annotated[list[str], Distinct] | None = Field(
        default=None, description="columns usable in filters (default: dimensions)"
    )
    protection: ProtectionSpec
    formats: Annotated[list[OutputFormat], Distinct] = Field(
        default_factory=lambda: list(FORMATS), min_length=1
    )
    max_cells: int | None = Field(default=None, ge=1, le=MAX_CELLS, strict=True)

    def allowed_filters(self) -> list[str]:
        """Columns a request may filter on."""
        return list(self.dimensions) if self.filters is None else self.filters


class Policy(Frozen):
    """A whole policy file: dataset, custom hierarchies, declared presets, release."""

    dataset: DatasetSpec
    hierarchies: dict[str, HierarchySpec] = Field(default_factory=dict)
    presets: dict[str, Protection] = Field(default_factory=dict)
    release: ReleaseSpec


class FilterSpec(Frozen):
    """A filter in a request: values at a level (``in``) and/or a range (``from``, ``to``)."""

    values: list[Annotated[str, BeforeValidator(_code)]] | None = Field(
        default=None, alias="in", min_length=1
    )
    low: str | None = Field(default=None, alias="from", strict=True)
    high: str | None = Field(default=None, alias="to", strict=True)
    level: str | None = None

    @field_validator("low", "high", mode="before")
    @classmethod
    def _text_bounds(cls, value: Any) -> Any:
        """YAML reads ``2025-06-01`` as a date and ``30`` as a number: their text."""
        if isinstance(value, bool):
            return value
        if isinstance(value, datetime.date | int | float):
            return value.isoformat() if isinstance(value, datetime.date) else str(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> FilterSpec:
        if self.values is None and self.low is None and self.high is None:
            raise ValueError("a filter needs `in`, `from` or `to`")
        return self


class ExtractRequest(Frozen):
    """What a partner asks for: grouping levels, measures, filters, margins and format."""

    kind: Literal["aggregate"] = Field(default="aggregate", exclude=True)
    group_by: dict[str, str] = Field(default_factory=dict, description="column → level")
    measures: Annotated[list[str], Distinct] = Field(
        default_factory=lambda: ["subjects"],
        min_length=1,
        description="`subjects` or `<measure>.<sum|mean|count>`",
    )
    filters: dict[str, FilterSpec] = Field(default_factory=dict)
    totals: bool = Field(default=False, strict=True)
    format: OutputFormat = "csv"


class DeclaresHierarchies(Protocol):
    """A policy file's dataset block and the custom hierarchies it declares."""

    @property
    def dataset(self) -> DatasetSpec: ...

    @property
    def hierarchies(self) -> dict[str, HierarchySpec]: ...


def load_hierarchies(policy: DeclaresHierarchies, base_dir: Path) -> dict[str, Hierarchy]:
    """Every hierarchy the dataset's columns name, keyed by column (files read from base_dir)."""
    resolved: dict[str, Hierarchy] = {}
    for column, spec in policy.dataset.columns.items():
        if spec.role == "measure":
            continue
        resolved[column] = _hierarchy_for(column, spec, policy, base_dir)
        if spec.level is not None:
            try:
                resolved[column].index(spec.level)
            except HierarchyError as error:
                error.field = f"dataset.columns.{column}.level"
                raise
    return resolved


def _hierarchy_for(
    column: str, spec: ColumnSpec, policy: DeclaresHierarchies, base_dir: Path
) -> Hierarchy:
    name = spec.hierarchy
    if name is None:
        return TimeHierarchy() if spec.role == "time" else CategoricalHierarchy(column)
    if name in policy.hierarchies:
        source = policy.hierarchies[name]
        if isinstance(source, BandSpec):
            return BandHierarchy(name, source.bands)
        file = HierarchyFile(file=source) if isinstance(source, str) else source
        return load_arx_csv(base_dir / file.file, name, file.levels, file.delimiter)
    found = builtin(name)
    if found is None:
        raise InvalidRequest(
            f"unknown hierarchy {name!r}: declare it under `hierarchies`",
            field=f"dataset.columns.{column}.hierarchy",
            code="unknown_hierarchy",
        )
    return found
