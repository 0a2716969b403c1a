"""Published relations between cells, and the quantities audited over them.

Published cells are tied by linear relations: a margin is the sum of the cells one level finer
along one dimension (and, across releases, a coarser cell is the sum of finer ones). Sums of a
measure always add up exactly. Distinct-subject counts add up exactly only along a dimension that
partitions the subjects (a meter lies in one commune); along another (a card pays in several
months) the margin is at least each of its cells and at most their sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from anonymization.blocks import SUBJECTS
from anonymization.hierarchies import TOP
from anonymization.lp import INF


@dataclass(frozen=True)
class Relations:
    """Rows ``parent = sum(children)`` over cells: +1 on the parent, -1 on each child.

    ``exact`` says, per row, whether distinct subjects add up exactly along that row's split.
    """

    matrix: sparse.csr_matrix
    parents: np.ndarray
    exact: np.ndarray

    @cached_property
    def entries(self) -> sparse.coo_matrix:
        """The matrix's entries as (row, column, value) triplets, kept once built."""
        return self.matrix.tocoo()

    @property
    def size(self) -> int:
        """Number of cells the relations range over."""
        return int(self.matrix.shape[1])

    @staticmethod
    def stack(parts: list[Relations], size: int) -> Relations:
        """Relations of several sources over the same ``size`` cells, one after the other."""
        kept = [part for part in parts if part.matrix.shape[0]]
        if not kept:
            return Relations(sparse.csr_matrix((0, size)), np.zeros(0, int), np.zeros(0, bool))
        return Relations(
            sparse.vstack([p.matrix for p in kept], format="csr"),
            np.concatenate([p.parents for p in kept]),
            np.concatenate([p.exact for p in kept]),
        )

    def dominance(self) -> sparse.csr_matrix:
        """Rows ``child - parent <= 0`` for the rows where subjects do not add up exactly."""
        loose = self.matrix[np.flatnonzero(~self.exact)].tocoo()
        children = loose.data < 0
        rows = np.arange(int(children.sum()))
        child = loose.col[children]
        parent = self.parents[np.flatnonzero(~self.exact)][loose.row[children]]
        data = np.concatenate([np.ones(len(rows)), -np.ones(len(rows))])
        return sparse.csr_matrix(
            (data, (np.concatenate([rows, rows]), np.concatenate([child, parent]))),
            shape=(len(rows), self.size),
        )


def relations_within(labels: pd.DataFrame, additive: frozenset[str]) -> Relations:
    """Margin relations of one table with every grouping set published: for each cell and each
    dimension where it is ``*``, the cell is the sum of the cells with a label there."""
    size = len(labels)
    dims = list(labels.columns)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    parents: list[np.ndarray] = []
    exact: list[np.ndarray] = []
    count = 0
    for dim in dims:
        top = (labels[dim] == TOP).to_numpy()
        others = [d for d in dims if d != dim]
        group = (
            labels.groupby(others, sort=False).ngroup().to_numpy()
            if others
            else np.zeros(size, dtype=int)
        )
        parent_of_group = np.full(group.max() + 1 if size else 0, -1)
        parent_of_group[group[top]] = np.flatnonzero(top)
        child = np.flatnonzero(~top)
        parent = parent_of_group[group[child]]
        keep = parent >= 0
        child, parent = child[keep], parent[keep]
        row_of_parent = np.full(size, -1)
        used = np.unique(parent)
        row_of_parent[used] = count + np.arange(len(used))
        rows += [row_of_parent[used], row_of_parent[parent]]
        cols += [used, child]
        vals += [np.ones(len(used)), -np.ones(len(child))]
        parents.append(used)
        exact.append(np.full(len(used), dim in additive))
        count += len(used)
    matrix = sparse.csr_matrix(
        (
            np.concatenate(vals or [np.zeros(0)]),
            (
                np.concatenate(rows or [np.zeros(0, int)]),
                np.concatenate(cols or [np.zeros(0, int)]),
            ),
        ),
        shape=(count, size),
    )
    return Relations(
        matrix,
        np.concatenate(parents or [np.zeros(0, int)]),
        np.concatenate(exact or [np.zeros(0, bool)]),
    )


@dataclass(frozen=True)
class Quantity:
    """A value audited in every cell: ``subjects`` or a measure's sum (``<m>_sum``); ``error``
    bounds how far a published value may be from the one the relations hold for (a sum read
    back as mean × count)."""

    name: str
    values: np.ndarray
    nonnegative: bool
    error: np.ndarray | None = None


def components(relations: Relations, suppressed: np.ndarray) -> tuple[int, np.ndarray]:
    """Groups of suppressed cells linked by some relation (label -1 for published cells): the
    connected parts of the graph of suppressed cells and the relations they appear in."""
    entries = relations.entries
    keep = suppressed[entries.col]
    size, count = relations.size, relations.matrix.shape[0]
    graph = sparse.coo_matrix(
        (np.ones(int(keep.sum())), (entries.col[keep], size + entries.row[keep])),
        shape=(size + count, size + count),
    )
    _, labels = connected_components(graph, directed=False)
    hidden = np.flatnonzero(suppressed)
    groups, numbered = np.unique(labels[hidden], return_inverse=True)
    out = np.full(size, -1)
    out[hidden] = numbered
    return len(groups), out


def quantity_rows(relations: Relations, quantity: Quantity) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The rows an LP over ``quantity`` reads, and whether each is an equation: every relation,
    exact for sums; for distinct subjects, a relation along a split that does not partition
    them reads ``parent <= sum(children)``, and ``child <= parent`` rows are added."""
    if quantity.name != SUBJECTS:
        return relations.matrix, np.ones(len(relations.exact), dtype=bool)
    if relations.exact.all():
        return relations.matrix, relations.exact
    dominance = relations.dominance()
    rows = sparse.vstack([relations.matrix, dominance], format="csr")
    return rows, np.concatenate([relations.exact, np.zeros(dominance.shape[0], dtype=bool)])


def row_tolerance(rows: sparse.csr_matrix, values: np.ndarray, quantity: Quantity) -> np.ndarray:
    """How far each row's value may be off by rounding alone: sums are published rounded to
    1e-6, subjects are exact counts; and floats are exact to about 1e-9 of the row's terms."""
    rounding = 0.0 if quantity.name == SUBJECTS else 1e-6
    tolerance: np.ndarray = rounding * (np.diff(rows.indptr) + 1) + 1e-9 * (
        1 + abs(rows) @ np.abs(values)
    )
    return tolerance


@dataclass(frozen=True)
class GroupRows:
    """The relations over some suppressed cells, every other cell at its published value: the
    rows (over those cells only), their bounds without numeric slack (what bound propagation
    reads) and with it (what the LP reads), and the cells' floor."""

    rows: sparse.csr_matrix
    exact: np.ndarray  # whether each row is an equation
    row_low: np.ndarray
    row_high: np.ndarray
    lp_low: np.ndarray
    lp_high: np.ndarray
    floor: float


def group_rows(
    relations: Relations, quantity: Quantity, suppressed: np.ndarray, cells: np.ndarray
) -> GroupRows:
    """The rows an LP over ``cells`` (suppressed cells, in order) reads for ``quantity``, the
    cells not ``suppressed`` known."""
    matrix, is_exact = quantity_rows(relations, quantity)
    known = np.where(suppressed, 0.0, np.nan_to_num(quantity.values.astype(float)))
    touching = np.flatnonzero(np.asarray(abs(matrix[:, cells]).sum(axis=1)).ravel())
    part = matrix[touching]
    rhs = -(part @ known)
    exact = is_exact[touching]
    # Published values may be off by rounding (numeric slack) or by design (``error``).
    error = np.zeros(len(touching))
    if quantity.error is not None:
        error = abs(part) @ np.where(suppressed, 0.0, quantity.error)
    tolerance = row_tolerance(part, known, quantity)
    return GroupRows(
        sparse.csr_matrix(part[:, cells]),
        exact,
        np.where(exact, rhs - error, -INF),
        rhs + error,
        np.where(exact, rhs - error - tolerance, -INF),
        rhs + error + tolerance,
        0.0 if quantity.nonnegative else -INF,
    )
