"""The aggregate plan: a plain value saying exactly what the engine will compute and protect.

``policies`` builds it from an agreement and a request; it can be printed and compared before
anything touches data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from anonymization.hierarchies import ExpressionHierarchy, Hierarchy
from anonymization.protection import Protection

Aggregate = Literal["sum", "mean", "count"]


@dataclass(frozen=True)
class Dimension:
    """A group-by column generalized from its stored level to ``level``."""

    column: str
    hierarchy: Hierarchy
    source_level: str
    level: str

    @property
    def by_expression(self) -> bool:
        """Whether the engine generalizes it in SQL (time, bands) or by a value lookup."""
        return isinstance(self.hierarchy, ExpressionHierarchy)


@dataclass(frozen=True)
class Filter:
    """Rows kept: a column's label at ``level`` in ``values``, and/or raw values in a range."""

    column: str
    hierarchy: Hierarchy
    source_level: str
    level: str
    values: tuple[str, ...] | None = None
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True)
class Measure:
    """One released measure column: ``<column>_<aggregate>``; ``subjects`` has no column."""

    column: str | None
    aggregate: Aggregate | Literal["subjects"]

    @property
    def name(self) -> str:
        """The output column's name."""
        return "subjects" if self.column is None else f"{self.column}_{self.aggregate}"


@dataclass(frozen=True)
class AggregatePlan:
    """Everything the engine needs to turn raw rows into a protected cell table."""

    subject: str
    dimensions: tuple[Dimension, ...]
    measures: tuple[Measure, ...]
    protection: Protection
    filters: tuple[Filter, ...] = ()
    totals: bool = False
    column_types: dict[str, str] = field(default_factory=dict)

    @property
    def summed(self) -> tuple[str, ...]:
        """Measure columns whose per-subject sums the engine must compute."""
        columns = [m.column for m in self.measures if m.column is not None]
        columns += list(self.protection.top_needed())
        return tuple(dict.fromkeys(columns))

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the plan (for manifests and dry runs)."""
        return {
            "subject": self.subject,
            "dimensions": {d.column: d.level for d in self.dimensions},
            "measures": [m.name for m in self.measures],
            "filters": {
                f.column: {
                    key: value
                    for key, value in (
                        ("level", f.level),
                        ("in", list(f.values) if f.values else None),
                        ("from", f.low),
                        ("to", f.high),
                    )
                    if value is not None
                }
                for f in self.filters
            },
            "totals": self.totals,
            "protection": self.protection.model_dump(exclude_none=True),
        }
