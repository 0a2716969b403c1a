"""Primary protection rules: each is a small, frozen, self-validating value applied to cells.

A rule marks the cells it finds *sensitive*; the engine suppresses them (primary suppression).
The cell table gives, per cell: ``subjects`` (distinct subjects), ``<m>_sum`` for each summed
measure and ``<m>_top``, the largest per-subject contributions to that sum, in descending order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from anonymization.errors import InvalidRequest, invalid_field
from anonymization.noise import CellKeyNoise

if TYPE_CHECKING:
    # Imported where used: policies load without pandas, so a release can start its scan first.
    import numpy as np
    import pandas as pd


# The largest k a policy may set (a product bound; every number of a policy is signed in the
# manifest, so it must also stay within RFC 8785's safe integers, 2^53 - 1).
MAX_K = 1_000_000


class Rule(BaseModel, ABC):
    """A primary protection rule; ``reason`` names it in the output's ``reason`` column."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    reason: ClassVar[str]

    @abstractmethod
    def sensitive(self, cells: pd.DataFrame) -> pd.Series:
        """Boolean mask of the cells this rule forbids releasing."""

    def top_needed(self) -> dict[str, int]:
        """How many top contributions per measure the rule reads (measure → n)."""
        return {}


class ThresholdRule(Rule):
    """Every released cell counts at least ``k`` distinct subjects."""

    reason: ClassVar[str] = "k"
    k: int = Field(ge=2, strict=True, description="minimum distinct subjects per released cell")

    def sensitive(self, cells: pd.DataFrame) -> pd.Series:
        """Cells with fewer than k distinct subjects."""
        return cells["subjects"] < self.k


def _tops(cells: pd.DataFrame, measure: str, n: int) -> np.ndarray:
    """An (cells × n) array of the n largest per-subject contributions, zero-padded."""
    import numpy as np

    heads = [() if v is None else v[:n] for v in cells[f"{measure}_top"].tolist()]
    lengths = np.fromiter(map(len, heads), dtype=np.int64, count=len(heads))
    out = np.zeros((len(cells), n))
    if lengths.sum():
        rows = np.repeat(np.arange(len(heads)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, np.arange(len(rows)) - starts] = np.concatenate(
            [np.asarray(h, dtype=float) for h in heads]
        )
    return out


class _MeasureRule(Rule):
    measure: str | None = Field(default=None, description="summed measure; default the first one")

    def resolved(self, default: str | None) -> str:
        """The measure this rule reads, or an error if the release sums none."""
        measure = self.measure or default
        if measure is None:
            raise InvalidRequest(
                f"the {self.reason} rule needs a summed measure and the release has none",
                field=f"protection.{self.reason}.measure",
            )
        return measure


class DominanceRule(_MeasureRule):
    """(n, percent) dominance: the n largest subjects make at most ``percent`` of the cell total.

    Contributions are each subject's total in the cell (fifty small payments are one
    contributor). A cell with a negative total cannot be judged by a ratio and is sensitive.
    """

    reason: ClassVar[str] = "dominance"
    n: int = Field(default=1, ge=1, le=10, strict=True)
    percent: float = Field(gt=0, le=100, strict=True)

    def sensitive(self, cells: pd.DataFrame) -> pd.Series:
        """Cells where the top-n share of the total exceeds ``percent``."""
        measure = self.resolved(None)
        total = cells[f"{measure}_sum"].to_numpy(dtype=float)
        top = _tops(cells, measure, self.n).sum(axis=1)
        flagged = (total < 0) | ((total > 0) & (top > self.percent / 100.0 * total))
        import pandas as pd

        return pd.Series(flagged, index=cells.index)

    def top_needed(self) -> dict[str, int]:
        """The rule reads the n largest contributions of its measure."""
        return {self.resolved(None): self.n}


class PPercentRule(_MeasureRule):
    """The p% rule (τ-ARGUS): the second largest contributor cannot estimate the largest one
    to within p percent: sensitive when ``total - x1 - x2 < p/100 * x1``."""

    reason: ClassVar[str] = "p_percent"
    p: float = Field(gt=0, lt=100, strict=True)

    def sensitive(self, cells: pd.DataFrame) -> pd.Series:
        """Cells where the rest of the total hides the largest contribution by less than p%."""
        measure = self.resolved(None)
        total = cells[f"{measure}_sum"].to_numpy(dtype=float)
        top = _tops(cells, measure, 2)
        remainder = total - top[:, 0] - top[:, 1]
        flagged = (total < 0) | (remainder < self.p / 100.0 * top[:, 0])
        import pandas as pd

        return pd.Series(flagged, index=cells.index)

    def top_needed(self) -> dict[str, int]:
        """The rule reads the two largest contributions."""
        return {self.resolved(None): 2}


class IntervalRequirement(BaseModel):
    """How wide the audit's interval of each protected cell must be: ``k`` wide for subjects,
    reaching ``p`` percent below and above the true value for each sum."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    p: float = Field(default=15.0, gt=0, lt=100, strict=True)


class Protection(BaseModel):
    """How a release is protected: a k threshold plus optional dominance and p% rules, the
    interval the audit requires of every protected cell, and optional consistent noise on the
    released counts (decided after the rules, which read the true values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    k: int = Field(ge=2, le=MAX_K, strict=True)
    dominance: DominanceRule | None = None
    p_percent: PPercentRule | None = None
    interval: IntervalRequirement = IntervalRequirement()
    noise: CellKeyNoise | None = None

    def with_measure(self, measure: str | None) -> Protection:
        """This protection with every measure rule bound to a measure (its own or ``measure``)."""
        updates: dict[str, Rule | None] = {}
        for name in ("dominance", "p_percent"):
            rule = getattr(self, name)
            if rule is not None:
                updates[name] = rule.model_copy(update={"measure": rule.resolved(measure)})
        return self.model_copy(update=updates)

    def rules(self) -> list[Rule]:
        """The rules in the order their reasons are reported."""
        rules: list[Rule] = [ThresholdRule(k=self.k)]
        rules += [rule for rule in (self.dominance, self.p_percent) if rule is not None]
        return rules

    def top_needed(self) -> dict[str, int]:
        """Measure → how many top contributions the rules need."""
        needed: dict[str, int] = {}
        for rule in self.rules():
            for measure, n in rule.top_needed().items():
                needed[measure] = max(needed.get(measure, 0), n)
        return needed


PRESETS: dict[str, Protection] = {
    # INSEE's statistical secret for business statistics: at least 3 units, top-1 at most 85 %.
    "insee": Protection(k=3, dominance=DominanceRule(n=1, percent=85)),
}


class ProtectionSpec(BaseModel):
    """The ``protection`` block of a policy: a preset by name, refined by explicit values."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    preset: str | None = None
    k: int | None = Field(default=None, ge=2, le=MAX_K, strict=True)
    dominance: DominanceRule | None = None
    p_percent: PPercentRule | None = None
    interval: IntervalRequirement | None = None
    noise: CellKeyNoise | None = None

    @field_validator("p_percent", mode="before")
    @classmethod
    def _p_alone(cls, value: object) -> object:
        """``p_percent: 10`` is short for ``p_percent: {p: 10}``."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"p": value}
        return value

    @model_validator(mode="after")
    def _needs_k(self) -> ProtectionSpec:
        if self.preset is None and self.k is None:
            raise ValueError(f"give k (2 to {MAX_K:,}) or a preset")
        return self

    def resolve(self, presets: dict[str, Protection] | None = None) -> Protection:
        """The effective protection: the preset's values overridden by the explicit ones."""
        known = {**PRESETS, **(presets or {})}
        base: dict[str, object] = {}
        if self.preset is not None:
            if self.preset not in known:
                raise InvalidRequest(
                    f"unknown preset {self.preset!r}; known: {', '.join(sorted(known))}",
                    field="protection.preset",
                )
            base = dict(known[self.preset])
        explicit = {
            "k": self.k,
            "dominance": self.dominance,
            "p_percent": self.p_percent,
            "interval": self.interval,
            "noise": self.noise,
        }
        base.update({key: value for key, value in explicit.items() if value is not None})
        try:
            return Protection.model_validate(base)
        except ValidationError as error:  # a preset's values that the explicit ones do not fit
            raise invalid_field(error, "protection") from None


SuppressionReason = Literal["k", "dominance", "p_percent", "secondary", "differencing"]


def primary_suppression(cells: pd.DataFrame, protection: Protection) -> pd.Series:
    """The reason each cell must be suppressed (first failing rule), or None where it is safe."""
    import pandas as pd

    reason = pd.Series([None] * len(cells), index=cells.index, dtype=object)
    for rule in protection.rules():
        flagged = rule.sensitive(cells) & reason.isna()
        reason[flagged] = rule.reason
    return reason
