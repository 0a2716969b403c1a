"""Privacy models checked on equivalence classes: k-anonymity, l-diversity, t-closeness.

Every check is vectorised over all classes at once. Input: a class id per row of the
combination table (``cls``), the rows' weights (record counts) and the sensitive codes.
Output: one boolean per class. k-anonymity and distinct l-diversity are monotone with
suppression (merging classes never makes one fail), so the lattice search may propagate them;
entropy and recursive l-diversity and t-closeness are checked node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anonymization.microdata.config import LDiversitySpec, ProtectionSpec, TClosenessSpec
from anonymization.microdata.encoding import Codes, EncodedColumn

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
_EPSILON = 1e-9


@dataclass(frozen=True)
class SensitiveValues:
    """A sensitive column on the combination table, with the whole table's distribution."""

    column: EncodedColumn
    codes: Codes
    overall: Floats

    @classmethod
    def of(cls, column: EncodedColumn, codes: Codes, weights: Floats) -> SensitiveValues:
        """Attach the overall distribution of ``codes`` weighted by ``weights``."""
        counts = np.bincount(codes, weights=weights, minlength=column.cardinality(0))
        return cls(column, codes, counts / counts.sum())


@dataclass(frozen=True)
class _Pairs:
    """The (class, sensitive value) pairs present, with their record counts."""

    cls: Codes
    value: Codes
    count: Floats


def _pairs(cls: Codes, weights: Floats, sensitive: SensitiveValues) -> _Pairs:
    values = sensitive.column.cardinality(0)
    key = cls * values + sensitive.codes
    unique, inverse = np.unique(key, return_inverse=True)
    counts = np.bincount(inverse, weights=weights, minlength=len(unique)).astype(np.float64)
    return _Pairs(unique // values, unique % values, counts)


def distinct_values(cls: Codes, classes: int, weights: Floats, sensitive: SensitiveValues) -> Codes:
    """Number of distinct sensitive values in each class."""
    pairs = _pairs(cls, weights, sensitive)
    return np.bincount(pairs.cls, minlength=classes).astype(np.int64)


def entropy(cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues) -> Floats:
    """Shannon entropy (natural log) of each class's sensitive distribution."""
    pairs = _pairs(cls, weights, sensitive)
    share = pairs.count / sizes[pairs.cls]
    terms = np.bincount(pairs.cls, weights=share * np.log(share), minlength=len(sizes))
    return -terms.astype(np.float64)


def _recursive(
    cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues, spec: LDiversitySpec
) -> Mask:
    """Recursive (c,l): the most frequent value is rarer than c times the l-th and rarer ones."""
    pairs = _pairs(cls, weights, sensitive)
    order = np.lexsort((-pairs.count, pairs.cls))
    ordered_cls, ordered_count = pairs.cls[order], pairs.count[order]
    starts = np.searchsorted(ordered_cls, np.arange(len(sizes)))
    rank = np.arange(len(order)) - starts[ordered_cls]
    present = np.bincount(ordered_cls, minlength=len(sizes))
    top = np.zeros(len(sizes))
    top[ordered_cls[rank == 0]] = ordered_count[rank == 0]
    tail = np.bincount(
        ordered_cls, weights=np.where(rank >= spec.l - 1, ordered_count, 0.0), minlength=len(sizes)
    )
    c = spec.c if spec.c is not None else 1.0
    return (present >= spec.l) & (top < c * tail)


def l_diverse(
    cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues, spec: LDiversitySpec
) -> Mask:
    """Which classes satisfy the l-diversity ``spec`` for one sensitive attribute."""
    if spec.kind == "distinct":
        return distinct_values(cls, len(sizes), weights, sensitive) >= spec.l
    if spec.kind == "entropy":
        diverse: Mask = entropy(cls, sizes, weights, sensitive) >= np.log(spec.l) - _EPSILON
        return diverse
    return _recursive(cls, sizes, weights, sensitive, spec)


def _class_distribution(
    cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues
) -> Floats:
    """Dense matrix (classes × values) of each class's sensitive distribution."""
    values = sensitive.column.cardinality(0)
    flat = np.bincount(
        cls * values + sensitive.codes, weights=weights, minlength=len(sizes) * values
    )
    return flat.reshape(len(sizes), values) / np.maximum(sizes, 1.0)[:, None]


def _aggregate(matrix: Floats, mapping: Codes, size: int) -> Floats:
    """Sum the columns of ``matrix`` into ``size`` groups given by ``mapping``."""
    onehot = np.zeros((len(mapping), size))
    onehot[np.arange(len(mapping)), mapping] = 1.0
    return matrix @ onehot


def _hierarchical(extra: Floats, column: EncodedColumn) -> Floats:
    """Hierarchical EMD (Li et al.): the mass moved through each inner node, weighted by height."""
    top = column.height - 1
    distance = np.zeros(extra.shape[0])
    for level in range(1, column.height):
        parent = np.zeros(column.cardinality(level - 1), dtype=np.int64)
        parent[column.ladders[level - 1]] = column.ladders[level]
        size = column.cardinality(level)
        positive = _aggregate(np.clip(extra, 0.0, None), parent, size)
        negative = _aggregate(np.clip(-extra, 0.0, None), parent, size)
        distance += level / top * np.minimum(positive, negative).sum(axis=1)
        extra = _aggregate(extra, parent, size)
    return distance


def closeness(
    cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues, distance: str
) -> Floats:
    """Earth mover's distance of each class's sensitive distribution to the overall one."""
    if distance == "equal":
        pairs = _pairs(cls, weights, sensitive)
        share = pairs.count / sizes[pairs.cls]
        gap = np.abs(share - sensitive.overall[pairs.value]) - sensitive.overall[pairs.value]
        total = np.bincount(pairs.cls, weights=gap, minlength=len(sizes)).astype(np.float64)
        return 0.5 * (total + 1.0)
    extra = _class_distribution(cls, sizes, weights, sensitive) - sensitive.overall[None, :]
    if distance == "ordered":
        values = extra.shape[1]
        moved: Floats = np.abs(np.cumsum(extra, axis=1)).sum(axis=1) / max(values - 1, 1)
        return moved
    return _hierarchical(extra, sensitive.column)


def t_close(
    cls: Codes, sizes: Floats, weights: Floats, sensitive: SensitiveValues, spec: TClosenessSpec
) -> Mask:
    """Which classes are within ``spec.max`` of the overall distribution."""
    return closeness(cls, sizes, weights, sensitive, spec.distance) <= spec.max + _EPSILON


def satisfying_classes(
    cls: Codes,
    sizes: Floats,
    weights: Floats,
    sensitive: Sequence[SensitiveValues],
    protection: ProtectionSpec,
    monotone_only: bool = False,
) -> Mask:
    """Which classes satisfy every model (or only the models monotone with suppression)."""
    ok: Mask = sizes >= protection.k
    spec = protection.l
    for column in sensitive:
        if spec is not None and (spec.kind == "distinct" or not monotone_only):
            ok &= l_diverse(cls, sizes, weights, column, spec)
        if protection.t is not None and not monotone_only:
            ok &= t_close(cls, sizes, weights, column, protection.t)
    return ok
