"""Integer encoding of a table for fast generalization: every value becomes a code per level.

A quasi-identifier's *ladder* maps its raw-value code to its code at each level of its hierarchy
(level 0 is the value, the last level is ``*``), so generalizing a whole column to a level is one
``take``, and the equivalence classes of a lattice node are a group-by over integer columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from anonymization.bands import BandHierarchy
from anonymization.errors import DataError, HierarchyError
from anonymization.hierarchies import (
    TOP,
    CategoricalHierarchy,
    Hierarchy,
    TimeHierarchy,
    load_arx_csv,
)
from anonymization.microdata.config import BandsSpec, FileSpec, HierarchySpec

Codes = npt.NDArray[np.int64]


def build_hierarchy(name: str, spec: HierarchySpec, base_dir: Path) -> Hierarchy:
    """Build a named hierarchy from its policy spec (ARX file path, file with levels, or bands)."""
    if isinstance(spec, BandsSpec):
        return BandHierarchy(name, spec.bands)
    path, levels = (spec.file, spec.levels) if isinstance(spec, FileSpec) else (spec, None)
    resolved = Path(path) if Path(path).is_absolute() else base_dir / path
    return load_arx_csv(resolved, name=name, levels=levels)


def _sorted_uniques(values: pd.Series) -> tuple[Codes, list[str]]:
    """Codes of a text column in value order (numeric order when every value is a number)."""
    codes, uniques = pd.factorize(values, sort=True)
    labels = [str(u) for u in uniques]
    numbers = pd.to_numeric(pd.Series(labels), errors="coerce")
    if len(labels) and not numbers.isna().any():
        order = np.argsort(numbers.to_numpy(), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return rank[codes].astype(np.int64), [labels[i] for i in order]
    return codes.astype(np.int64), labels


@dataclass(frozen=True)
class EncodedColumn:
    """A column as codes of its raw values, with the ladder and labels of every level."""

    name: str
    codes: Codes
    ladders: tuple[Codes, ...]
    labels: tuple[tuple[str, ...], ...]
    counts: npt.NDArray[np.float64]

    @property
    def height(self) -> int:
        """Number of levels including the raw values and ``*``."""
        return len(self.ladders)

    def cardinality(self, level: int) -> int:
        """Number of distinct labels at ``level``."""
        return len(self.labels[level])


def encode_column(name: str, values: pd.Series, hierarchy: Hierarchy | None) -> EncodedColumn:
    """Encode a column and every level of its hierarchy; a value not covered is an error."""
    codes, uniques = _sorted_uniques(values)
    hierarchy = hierarchy or CategoricalHierarchy(name)
    ladders: list[Codes] = []
    labels: list[tuple[str, ...]] = []
    for level in (*hierarchy.levels, TOP):
        try:
            mapping = hierarchy.generalize_labels(uniques, hierarchy.levels[0], level)
        except ValueError:
            raise _unreadable(name, uniques, hierarchy, level) from None
        except HierarchyError as error:
            raise HierarchyError(error.detail, field=name, code=error.code) from None
        mapped = [mapping[u] for u in uniques]
        level_codes, level_labels = pd.factorize(pd.Series(mapped, dtype=object), sort=False)
        ladders.append(level_codes.astype(np.int64))
        labels.append(tuple(str(label) for label in level_labels))
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    return EncodedColumn(name, codes, tuple(ladders), tuple(labels), counts)


def _unreadable(name: str, uniques: list[str], hierarchy: Hierarchy, level: str) -> HierarchyError:
    """The error for a value ``hierarchy`` cannot read (not a date, not a number), naming the
    column, the first such value and what the hierarchy expects."""
    bad = next((u for u in uniques if not _reads(hierarchy, u, level)), uniques[0])
    base = getattr(hierarchy, "base", hierarchy)  # a hierarchy seen from a stored level
    if isinstance(base, TimeHierarchy):
        expected = f"a date (YYYY-MM-DD, or an ISO timestamp) for the time hierarchy {base.name!r}"
    elif isinstance(base, BandHierarchy):
        expected = f"a number for the numeric bands of hierarchy {base.name!r}"
    else:
        expected = f"a value hierarchy {base.name!r} can read"
    return HierarchyError(
        f"column {name!r} holds {bad!r}, which is not {expected}",
        field=name,
        code="malformed_value",
    )


def _reads(hierarchy: Hierarchy, value: str, level: str) -> bool:
    """Whether ``hierarchy`` parses ``value`` (one it parses but does not cover reads)."""
    try:
        hierarchy.generalize_labels([value], hierarchy.levels[0], level)
    except ValueError:
        return False
    except HierarchyError:
        return True
    return True


def group_ids(columns: Sequence[Codes], cardinalities: Sequence[int]) -> tuple[Codes, int]:
    """Dense group ids of the rows of integer columns (a group-by), and the number of groups."""
    if not columns:
        return np.zeros(0, dtype=np.int64), 0
    key = columns[0].astype(np.int64, copy=True)
    space = max(cardinalities[0], 1)
    for column, cardinality in zip(columns[1:], cardinalities[1:], strict=True):
        if space * max(cardinality, 1) >= 2**62:
            key, uniques = pd.factorize(key)
            space = len(uniques)
        key = key * cardinality + column
        space *= max(cardinality, 1)
    ids, uniques = pd.factorize(key)
    return ids.astype(np.int64), len(uniques)


def refuse_missing(values: pd.Series) -> None:
    """Raise naming the column if a record has no value (a null would be coded as another)."""
    missing = int(values.isna().sum())
    if missing:
        raise DataError(
            f"{missing} records have no {values.name!r}",
            field=str(values.name),
            code="missing_value",
        )


@dataclass(frozen=True)
class Microtable:
    """The distinct combinations of quasi-identifier and sensitive codes, with their counts.

    ``row_group`` maps each input record to its combination, so the released table is rebuilt
    record by record from a decision made on the (smaller) combination table.
    """

    quasi_identifiers: tuple[EncodedColumn, ...]
    sensitive: tuple[EncodedColumn, ...]
    qi_codes: tuple[Codes, ...]
    sensitive_codes: tuple[Codes, ...]
    weights: npt.NDArray[np.float64]
    row_group: Codes
    # Per combination, the record's class in each held release it can be joined with (0: not
    # in it): the classes the lattice search checks are then the joint ones.
    linked_codes: tuple[Codes, ...] = ()

    @property
    def records(self) -> int:
        """Number of input records."""
        return len(self.row_group)


def encode_table(
    table: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: Sequence[str],
    hierarchies: Mapping[str, Hierarchy | None],
    linked: Sequence[Codes] = (),
) -> Microtable:
    """Encode the quasi-identifiers and sensitive columns of ``table`` into a Microtable;
    ``linked`` are per-record codes (non-negative) that split combinations too."""
    missing = [c for c in (*quasi_identifiers, *sensitive) if c not in table.columns]
    if missing:
        raise DataError(f"the data has no column(s) {', '.join(missing)}", code="missing_column")
    if table.empty:
        raise DataError("the data has no records", code="empty_data")
    for column in (*quasi_identifiers, *sensitive):
        refuse_missing(table[column])
    qis = tuple(encode_column(c, table[c], hierarchies.get(c)) for c in quasi_identifiers)
    sens = tuple(encode_column(c, table[c], hierarchies.get(c)) for c in sensitive)
    columns = [col.codes for col in (*qis, *sens)] + list(linked)
    cards = [col.cardinality(0) for col in (*qis, *sens)] + [int(c.max()) + 1 for c in linked]
    row_group, groups = group_ids(columns, cards)
    first = np.full(groups, -1, dtype=np.int64)
    first[row_group[::-1]] = np.arange(len(row_group) - 1, -1, -1)
    weights = np.bincount(row_group, minlength=groups).astype(np.float64)
    return Microtable(
        quasi_identifiers=qis,
        sensitive=sens,
        qi_codes=tuple(col.codes[first] for col in qis),
        sensitive_codes=tuple(col.codes[first] for col in sens),
        weights=weights,
        row_group=row_group,
        linked_codes=tuple(codes[first] for codes in linked),
    )
