"""Utility metrics of a generalized, partly suppressed table (lower is better for all four).

- ``loss``: ARX's generalization intensity (Iyengar): per record and quasi-identifier, the share
  of the raw domain its label covers, ``(leaves - 1) / (domain - 1)``; a suppressed record costs
  1; averaged over records and quasi-identifiers (0 = raw data, 1 = everything suppressed).
- ``entropy``: non-uniform entropy (ARX's precomputed variant, independent of suppression):
  ``sum over attributes and records of -log2 P(raw value | its label)``.
- ``discernibility``: each kept record costs its class size, each suppressed record the table size.
- ``average_class_size``: kept records per kept class, divided by k.

Each metric gives a cheap monotone *bound* for every lattice node (never above the node's value
nor any generalization's value), and a *floor* after evaluating a node, below which no
generalization of it can go; the optimal search uses both to prune.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anonymization.microdata.config import Metric
from anonymization.microdata.encoding import Codes, EncodedColumn, Microtable
from anonymization.microdata.models import Floats, Mask

Levels = npt.NDArray[np.int16]


@dataclass(frozen=True)
class ClassTable:
    """The equivalence classes of one generalization: class per combination, sizes, kept."""

    cls: Codes
    sizes: Floats
    kept: Mask

    @property
    def suppressed(self) -> int:
        """Number of records in classes that are suppressed."""
        return round(float(self.sizes[~self.kept].sum()))

    @property
    def kept_classes(self) -> int:
        """Number of classes released."""
        return int(self.kept.sum())


def _leaf_share(column: EncodedColumn, level: int) -> Floats:
    """Per raw value: the loss ``(leaves - 1) / (domain - 1)`` of its label at ``level``."""
    domain = column.cardinality(0)
    leaves = np.bincount(column.ladders[level], minlength=column.cardinality(level))
    return (leaves[column.ladders[level]] - 1.0) / max(domain - 1, 1)


def _entropy(column: EncodedColumn, level: int) -> float:
    label_counts = np.bincount(column.ladders[level], weights=column.counts)
    share = column.counts / label_counts[column.ladders[level]]
    return float(-(column.counts * np.log2(share)).sum())


class Utility:
    """The metrics of one Microtable; ``metric`` is the one the optimal search minimises."""

    def __init__(self, table: Microtable, metric: Metric, k: int, suppression_limit: int) -> None:
        self.table = table
        self.metric = metric
        self.k = k
        self.limit = suppression_limit
        self.records = float(table.records)
        qis = table.quasi_identifiers
        self._leaf_share = [[_leaf_share(c, lv) for lv in range(c.height)] for c in qis]
        self._loss = [
            np.array([(c.counts * s).sum() for s in shares])
            for c, shares in zip(qis, self._leaf_share, strict=True)
        ]
        self._entropy = [np.array([_entropy(c, lv) for lv in range(c.height)]) for c in qis]

    def bound(self, nodes: Levels) -> Floats:
        """A monotone lower bound of the metric for every node (rows of levels)."""
        if self.metric == "entropy":
            return self._sum_per_level(self._entropy, nodes)
        if self.metric == "loss":
            dims = len(self._loss)
            return self._sum_per_level(self._loss, nodes) / (self.records * dims)
        if self.metric == "discernibility":
            return np.full(len(nodes), self.records)
        return np.ones(len(nodes))

    @staticmethod
    def _sum_per_level(per_level: list[Floats], nodes: Levels) -> Floats:
        total = np.zeros(len(nodes))
        for column, values in enumerate(per_level):
            total += values[nodes[:, column]]
        return total

    def value(
        self, node: tuple[int, ...], classes: ClassTable, metric: Metric | None = None
    ) -> float:
        """The metric (default: the searched one) of the table at ``node`` with its suppression."""
        metric = metric or self.metric
        suppressed = float(classes.suppressed)
        if metric == "entropy":
            return float(sum(self._entropy[j][lv] for j, lv in enumerate(node)))
        if metric == "loss":
            kept_rows = classes.kept[classes.cls]
            row_loss = np.zeros(len(kept_rows))
            for j, level in enumerate(node):
                row_loss += self._leaf_share[j][level][self.table.qi_codes[j]]
            dims = len(node)
            kept_loss = float((row_loss * self.table.weights)[kept_rows].sum())
            return (kept_loss + suppressed * dims) / (self.records * dims)
        if metric == "discernibility":
            kept = classes.sizes[classes.kept]
            return float((kept**2).sum()) + suppressed * self.records
        kept_classes = max(classes.kept_classes, 1)
        return (self.records - suppressed) / kept_classes / self.k

    def floor(self, node: tuple[int, ...], classes: ClassTable) -> float:
        """A lower bound of the metric at ``node`` and at every generalization of it."""
        if self.metric == "discernibility":
            return float((classes.sizes**2).sum())
        if self.metric == "average_class_size":
            return (self.records - self.limit) / len(classes.sizes) / self.k
        levels = np.array([node], dtype=np.int16)
        return float(self.bound(levels)[0])

    def report(self, node: tuple[int, ...], classes: ClassTable) -> dict[str, float]:
        """All four metrics of the released table, for the manifest."""
        metrics: tuple[Metric, ...] = ("loss", "entropy", "discernibility", "average_class_size")
        return {name: round(self.value(node, classes, name), 6) for name in metrics}
