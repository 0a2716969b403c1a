"""Mondrian (LeFevre et al.): strict multidimensional partitioning, for numeric QIs and big data.

All partitions of one depth are split together, vectorised: each partition picks the QI of
widest normalised range, splits at its median value (values equal to the median stay on one
side, so regions never overlap), and keeps the split only if both halves satisfy every model;
otherwise it tries its next-widest QI. Quasi-identifiers are ranked codes: numbers in numeric
order, categories in their hierarchy's order (siblings adjacent).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anonymization.errors import PolicyViolation
from anonymization.microdata.config import ProtectionSpec
from anonymization.microdata.encoding import Codes, group_ids
from anonymization.microdata.models import Floats, Mask, SensitiveValues, satisfying_classes


def _partition_extent(part: Codes, ranks: Codes, parts: int) -> tuple[Codes, Codes]:
    low = np.full(parts, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(parts, -1, dtype=np.int64)
    np.minimum.at(low, part, ranks)
    np.maximum.at(high, part, ranks)
    return low, high


def _median_split(part: Codes, values: Codes, weights: Floats, parts: int, width: int) -> Mask:
    """Rows going left when each partition splits its ``values`` at their weighted median."""
    order = np.argsort(part * width + values, kind="stable")
    cumulative = np.cumsum(weights[order])
    totals = np.bincount(part, weights=weights, minlength=parts)
    before = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    position = np.searchsorted(cumulative, before + totals / 2.0)
    median = values[order][np.minimum(position, len(order) - 1)]
    highest = np.full(parts, -1, dtype=np.int64)
    np.maximum.at(highest, part, values)
    everything_left = median >= highest
    return np.where(everything_left[part], values < median[part], values <= median[part])


class _Partitioner:
    def __init__(
        self,
        ranks: Sequence[Codes],
        weights: Floats,
        sensitive: Sequence[SensitiveValues],
        protection: ProtectionSpec,
    ) -> None:
        self.ranks = ranks
        self.weights = weights
        self.sensitive = sensitive
        self.protection = protection
        self.spans = [max(int(r.max()) - int(r.min()), 1) for r in ranks]
        self.width = max(int(r.max()) for r in ranks) + 1

    def _satisfy(self, cls: Codes, count: int, rows: Codes) -> Mask:
        weights = self.weights[rows]
        sizes = np.bincount(cls, weights=weights, minlength=count).astype(np.float64)
        sensitive = [SensitiveValues(s.column, s.codes[rows], s.overall) for s in self.sensitive]
        return satisfying_classes(cls, sizes, weights, sensitive, self.protection)

    def _widths(self, part: Codes, parts: int) -> Floats:
        widths = np.zeros((parts, len(self.ranks)))
        for j, ranks in enumerate(self.ranks):
            low, high = _partition_extent(part, ranks, parts)
            widths[:, j] = (high - low) / self.spans[j]
        return widths

    def _try(self, part: Codes, parts: int, dims: Codes, active: Mask) -> Codes:
        """Rows (indices) moved to a new partition by the allowed splits along ``dims``."""
        rows = np.flatnonzero(active[part])
        local, count = group_ids([part[rows]], [parts])
        original = np.zeros(count, dtype=np.int64)
        original[local] = part[rows]
        values = np.zeros(len(rows), dtype=np.int64)
        for j, ranks in enumerate(self.ranks):
            chosen = dims[part[rows]] == j
            values[chosen] = ranks[rows[chosen]]
        left = _median_split(local, values, self.weights[rows], count, self.width)
        child = local * 2 + (~left)
        sides = np.bincount(child, minlength=count * 2).reshape(count, 2)
        ok = self._satisfy(child, count * 2, rows).reshape(count, 2)
        allowed = ok.all(axis=1) & (sides.min(axis=1) > 0)
        moving: Codes = rows[allowed[local] & ~left]
        return moving

    def run(self) -> Codes:
        part = np.zeros(len(self.weights), dtype=np.int64)
        if not self._satisfy(part, 1, np.arange(len(part)))[0]:
            raise PolicyViolation(
                "the whole table does not satisfy the protection, so no partitioning can",
                field="release.protection",
                code="no_solution",
            )
        parts, open_parts = 1, np.ones(1, dtype=np.bool_)
        while open_parts.any():
            preference = np.argsort(-self._widths(part, parts), axis=1, kind="stable")
            moved = np.zeros(len(part), dtype=np.bool_)
            undecided = open_parts.copy()
            for attempt in range(len(self.ranks)):
                if not undecided.any():
                    break
                moving = self._try(part, parts, preference[:, attempt], undecided)
                moved[moving] = True
                undecided[np.unique(part[moving])] = False
            split = open_parts & ~undecided
            labels, part = np.unique(np.where(moved, part + parts, part), return_inverse=True)
            open_parts = np.concatenate((split, split))[labels]
            parts = len(labels)
        return part.astype(np.int64)


def mondrian(
    ranks: Sequence[Codes],
    weights: Floats,
    sensitive: Sequence[SensitiveValues],
    protection: ProtectionSpec,
) -> Codes:
    """Partition weighted rows so that every partition satisfies ``protection``."""
    return _Partitioner(ranks, weights, sensitive, protection).run()
