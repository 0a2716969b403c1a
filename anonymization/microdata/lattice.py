"""Optimal full-domain generalization: the lattice node of least information loss.

A node gives each quasi-identifier a level of its hierarchy. Nodes are visited in increasing
order of the metric's monotone bound; once the bound reaches the best value found, no node left
can do better and the search stops. Whether a node passes the models that are monotone with
suppression (k-anonymity, distinct l-diversity) is decided by binary search along a path of
generalizations, as Flash does: a failing node fails all its specializations, a passing node
passes all its generalizations, so one check tags many nodes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from anonymization.errors import InvalidRequest, PolicyViolation
from anonymization.microdata.config import Metric, ProtectionSpec
from anonymization.microdata.encoding import Codes, Microtable, group_ids
from anonymization.microdata.metrics import ClassTable, Levels, Utility
from anonymization.microdata.models import SensitiveValues, satisfying_classes

MAX_NODES = 2_000_000


@dataclass(frozen=True)
class _Summary:
    monotone: bool
    passes: bool
    suppressed: int
    value: float
    floor: float


@dataclass(frozen=True)
class SearchResult:
    """The chosen node, its classes, its metric value and how much of the lattice was checked."""

    node: tuple[int, ...]
    classes: ClassTable
    value: float
    checked: int
    lattice_size: int


class LatticeSearch:
    """The search over one Microtable for one protection and metric."""

    def __init__(self, table: Microtable, protection: ProtectionSpec, metric: Metric) -> None:
        self.table = table
        self.protection = protection
        self.heights = [column.height for column in table.quasi_identifiers]
        size = math.prod(self.heights)
        if size > MAX_NODES:
            raise InvalidRequest(
                f"the generalization lattice has {size} nodes (more than {MAX_NODES}); "
                "use fewer quasi-identifiers, shorter hierarchies or algorithm: mondrian",
                field="release.quasi_identifiers",
                code="lattice_too_large",
            )
        self.nodes: Levels = np.array(
            list(itertools.product(*map(range, self.heights))), dtype=np.int16
        ).reshape(size, len(self.heights))
        self.strides = [math.prod(self.heights[j + 1 :]) for j in range(len(self.heights))]
        self.limit = protection.suppressible(table.records)
        self.utility = Utility(table, metric, protection.k, self.limit)
        self.bound = self.utility.bound(self.nodes)
        self.sensitive = [
            SensitiveValues.of(column, codes, table.weights)
            for column, codes in zip(table.sensitive, table.sensitive_codes, strict=True)
        ]
        self._monotone_only = protection.t is None and (
            protection.l is None or protection.l.kind == "distinct"
        )
        self._generalized: dict[tuple[int, int], Codes] = {}
        self.failed = np.zeros(size, dtype=np.bool_)
        self.passed = np.zeros(size, dtype=np.bool_)
        self.pruned = np.zeros(size, dtype=np.bool_)
        self.summaries: dict[int, _Summary] = {}

    def released_classes(self, node: tuple[int, ...]) -> Codes:
        """The class of each combination at ``node`` as the release shows it."""
        columns = [self._column(j, level) for j, level in enumerate(node)]
        cards = [
            c.cardinality(level)
            for c, level in zip(self.table.quasi_identifiers, node, strict=True)
        ]
        return group_ids(columns, cards)[0]

    def classes(self, node: tuple[int, ...], monotone_only: bool = False) -> ClassTable:
        """The equivalence classes at ``node`` (joint with the held releases' classes when the
        table is linked to some) and which of them satisfy the models."""
        columns = [self._column(j, level) for j, level in enumerate(node)]
        cards = [
            c.cardinality(level)
            for c, level in zip(self.table.quasi_identifiers, node, strict=True)
        ]
        columns += self.table.linked_codes
        cards += [int(codes.max()) + 1 for codes in self.table.linked_codes]
        cls, count = group_ids(columns, cards)
        sizes = np.bincount(cls, weights=self.table.weights, minlength=count).astype(np.float64)
        kept = satisfying_classes(
            cls,
            sizes,
            self.table.weights,
            self.sensitive,
            self.protection,
            monotone_only=monotone_only or self._monotone_only,
        )
        return ClassTable(cls, sizes, kept)

    def _column(self, j: int, level: int) -> Codes:
        key = (j, level)
        if key not in self._generalized:
            ladder = self.table.quasi_identifiers[j].ladders[level]
            self._generalized[key] = ladder[self.table.qi_codes[j]]
        return self._generalized[key]

    def _check(self, index: int) -> _Summary:
        if index in self.summaries:
            return self.summaries[index]
        node = tuple(int(v) for v in self.nodes[index])
        classes = self.classes(node, monotone_only=True)
        monotone = classes.suppressed <= self.limit
        if monotone and not self._monotone_only:
            classes = self.classes(node)
        summary = _Summary(
            monotone,
            monotone and classes.suppressed <= self.limit,
            classes.suppressed,
            self.utility.value(node, classes),
            self.utility.floor(node, classes),
        )
        self.summaries[index] = summary
        if monotone:
            self.passed |= np.all(self.nodes >= self.nodes[index], axis=1)
        else:
            self.failed |= np.all(self.nodes <= self.nodes[index], axis=1)
        return summary

    def _path_up(self, index: int) -> list[int]:
        """A chain of generalizations from ``index``, each step the successor of least bound."""
        path = [index]
        while not self.passed[path[-1]]:
            levels = self.nodes[path[-1]]
            successors = [
                path[-1] + self.strides[j]
                for j in range(len(self.heights))
                if levels[j] < self.heights[j] - 1
            ]
            successors = [s for s in successors if not self.failed[s]]
            if not successors:
                break
            path.append(min(successors, key=lambda s: self.bound[s]))
        return path

    def _resolve(self, index: int) -> None:
        """Decide the monotone models at ``index`` by binary search along a path above it."""
        path = self._path_up(index)
        low, high = 0, len(path) - 1
        while low <= high and not (self.failed[index] or self.passed[index]):
            middle = (low + high) // 2
            node = path[middle]
            if self.passed[node] or (not self.failed[node] and self._check(node).monotone):
                high = middle - 1
            else:
                low = middle + 1

    def run(self) -> SearchResult:
        """Search the lattice; raise PolicyViolation when no node satisfies the protection."""
        order = np.lexsort((self.nodes.sum(axis=1), self.bound))
        best: tuple[float, int] | None = None
        for index in (int(i) for i in order):
            if best is not None and self.bound[index] >= best[0]:
                break
            if self.failed[index] or self.pruned[index]:
                continue
            if not self.passed[index]:
                self._resolve(index)
                if self.failed[index]:
                    continue
            summary = self._check(index)
            if summary.passes and (best is None or summary.value < best[0]):
                best = (summary.value, index)
                self._prune(best[0])
        if best is None:
            raise self._impossible()
        node = tuple(int(v) for v in self.nodes[best[1]])
        return SearchResult(node, self.classes(node), best[0], len(self.summaries), len(self.nodes))

    def _prune(self, best: float) -> None:
        for index, summary in self.summaries.items():
            if summary.floor >= best:
                self.pruned |= np.all(self.nodes >= self.nodes[index], axis=1)

    def _impossible(self) -> PolicyViolation:
        top = len(self.nodes) - 1
        self._check(top)
        index, summary = min(self.summaries.items(), key=lambda item: item[1].suppressed)
        node = [int(v) for v in self.nodes[index]]
        return PolicyViolation(
            f"no generalization satisfies the protection within the suppression limit of "
            f"{self.limit} records; the best node found, {node}, would suppress "
            f"{summary.suppressed} of {self.table.records} records",
            field="release.protection",
            code="no_solution",
        )


def optimal_search(table: Microtable, protection: ProtectionSpec, metric: Metric) -> SearchResult:
    """The node of least ``metric`` satisfying ``protection`` within its suppression limit."""
    return LatticeSearch(table, protection, metric).run()
