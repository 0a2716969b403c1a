"""Release microdata: drop identifiers, pseudonymize the subject, generalize, suppress, report.

``anonymize_microdata`` is the one entry point; it takes a table, a validated policy, the built
hierarchies and the agreement's pseudonym key, and returns the released table and its manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from anonymization.errors import DataError, HierarchyError, InvalidRequest, PolicyViolation
from anonymization.hierarchies import Hierarchy, TableHierarchy
from anonymization.microdata.config import MicrodataPolicy, ProtectionSpec
from anonymization.microdata.encoding import (
    Codes,
    EncodedColumn,
    Microtable,
    build_hierarchy,
    group_ids,
    refuse_missing,
)
from anonymization.microdata.encoding import encode_table as encode
from anonymization.microdata.lattice import LatticeSearch
from anonymization.microdata.linkage import (
    HeldMicrodata,
    absent_failing,
    failing_records,
    held_codes,
    joint_protection,
    refuse_linkable,
)
from anonymization.microdata.measure import measure
from anonymization.microdata.metrics import ClassTable
from anonymization.microdata.models import SensitiveValues
from anonymization.microdata.mondrian import mondrian
from anonymization.microdata.pseudonyms import pseudonymize
from anonymization.microdata.risk import risk_report


@dataclass(frozen=True)
class MicrodataResult:
    """The released table (non-suppressed records only) and its manifest; with held releases
    given (a ledger), ``classes`` is what the ledger keeps of this one: each released
    pseudonym's class number."""

    table: pd.DataFrame
    manifest: dict[str, Any]
    classes: dict[str, int] | None = None


def load_hierarchies(policy: MicrodataPolicy, base_dir: Path) -> dict[str, Hierarchy]:
    """Build the hierarchy of every released column that names one, keyed by column."""
    columns = [*policy.release.quasi_identifiers, *policy.release.sensitive]
    named = {c: policy.hierarchy_name(c) for c in columns}
    return {
        column: build_hierarchy(name, policy.hierarchies[name], base_dir)
        for column, name in named.items()
        if name is not None
    }


def _check_columns(data: pd.DataFrame, policy: MicrodataPolicy) -> None:
    dataset, release = policy.dataset, policy.release
    wanted = [*dataset.identifiers, *release.quasi_identifiers, *release.sensitive]
    if dataset.subject:
        wanted.append(dataset.subject)
    missing = [c for c in wanted if c not in data.columns]
    if missing:
        raise DataError(f"the data has no column(s) {', '.join(missing)}", code="missing_column")


def _check_subjects(data: pd.DataFrame, subject: str | None) -> None:
    """Classes count records: each subject must be one record, else a class of k records could
    hold fewer than k subjects (and their shared pseudonym would show it)."""
    if not subject:
        return
    refuse_missing(data[subject])
    repeated = int(data[subject].astype(str).duplicated().sum())
    if repeated:
        raise PolicyViolation(
            f"microdata needs one record per subject: {repeated} records repeat a "
            f"{subject!r} already seen (k would count records, not subjects)",
            field="dataset.subject",
            code="subject_repeated",
        )


def _check_hierarchies(policy: MicrodataPolicy, hierarchies: Mapping[str, Hierarchy]) -> None:
    for column in policy.release.quasi_identifiers:
        hierarchy = hierarchies.get(column)
        if hierarchy is None and policy.release.algorithm == "optimal":
            raise HierarchyError(
                f"quasi-identifier {column!r} has no hierarchy",
                field=column,
                code="missing_hierarchy",
            )
    t = policy.release.protection.t
    if t is not None and t.distance == "hierarchical":
        for column in policy.release.sensitive:
            if not isinstance(hierarchies.get(column), TableHierarchy):
                raise HierarchyError(
                    f"hierarchical t-closeness needs a hierarchy table for "
                    f"sensitive attribute {column!r}",
                    field=column,
                    code="missing_hierarchy",
                )


def _numeric(column: EncodedColumn, hierarchy: Hierarchy | None) -> bool:
    """Whether the column is split and released as numeric ranges: numbers, not codes."""
    if hierarchy is not None and hierarchy.codes:
        return False
    return not pd.to_numeric(pd.Series(column.labels[0]), errors="coerce").isna().any()


def _mondrian_ranks(column: EncodedColumn, hierarchy: Hierarchy | None) -> Codes:
    """Codes ordered for splitting: numeric order, or hierarchy order (siblings adjacent)."""
    if _numeric(column, hierarchy):
        return np.arange(column.cardinality(0), dtype=np.int64)
    if not isinstance(hierarchy, TableHierarchy) and not (hierarchy and hierarchy.codes):
        raise HierarchyError(
            f"quasi-identifier {column.name!r} is not numeric and has no hierarchy table",
            field=column.name,
            code="missing_hierarchy",
        )
    paths = [
        tuple(column.labels[lv][column.ladders[lv][v]] for lv in range(column.height - 1, -1, -1))
        for v in range(column.cardinality(0))
    ]
    order = sorted(range(len(paths)), key=paths.__getitem__)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def _mondrian_labels(
    column: EncodedColumn, codes: Codes, part: Codes, parts: int, numeric: bool
) -> list[str]:
    """The label of each partition: a numeric range, or the lowest common hierarchy label."""
    if numeric:
        values = pd.to_numeric(pd.Series(column.labels[0])).to_numpy()[codes]
        low = pd.Series(values).groupby(part).min().to_numpy()
        high = pd.Series(values).groupby(part).max().to_numpy()
        return [
            _fmt(a) if a == b else f"[{_fmt(a)}..{_fmt(b)}]" for a, b in zip(low, high, strict=True)
        ]
    labels = np.empty(parts, dtype=object)
    todo = np.ones(parts, dtype=np.bool_)
    for level in range(column.height):
        mapped = column.ladders[level][codes]
        low = pd.Series(mapped).groupby(part).min().to_numpy()
        high = pd.Series(mapped).groupby(part).max().to_numpy()
        now = todo & (low == high)
        labels[now] = [column.labels[level][c] for c in low[now]]
        todo &= ~now
    return [str(label) for label in labels]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _run_mondrian(
    table: Microtable, policy: MicrodataPolicy, hierarchies: Mapping[str, Hierarchy]
) -> tuple[Codes, dict[str, list[str]]]:
    qis = table.quasi_identifiers
    numeric = [_numeric(c, hierarchies.get(c.name)) for c in qis]
    ranks = [
        _mondrian_ranks(c, hierarchies.get(c.name))[codes]
        for c, codes in zip(qis, table.qi_codes, strict=True)
    ]
    sensitive = [
        SensitiveValues.of(c, codes, table.weights)
        for c, codes in zip(table.sensitive, table.sensitive_codes, strict=True)
    ]
    part = mondrian(ranks, table.weights, sensitive, policy.release.protection)
    parts = int(part.max()) + 1
    labels = {
        c.name: _mondrian_labels(c, codes, part, parts, is_numeric)
        for c, codes, is_numeric in zip(qis, table.qi_codes, numeric, strict=True)
    }
    # Partitions released with the same labels (two runs of leaves under one lowest common
    # ancestor) are one class of the file: classes and risk are counted on those.
    coded = [pd.factorize(pd.Series(values))[0].astype(np.int64) for values in labels.values()]
    merged, _ = group_ids(coded, [int(codes.max()) + 1 for codes in coded])
    first = np.unique(merged, return_index=True)[1]
    return merged[part], {name: [values[i] for i in first] for name, values in labels.items()}


def anonymize_microdata(
    data: pd.DataFrame,
    policy: MicrodataPolicy,
    hierarchies: Mapping[str, Hierarchy],
    pseudonym_key: bytes | None,
    held: Sequence[HeldMicrodata] | None = None,
) -> MicrodataResult:
    """Release ``data`` under ``policy``: generalized, suppressed, pseudonymized, reported.
    With ``held`` (what a ledger says the partner holds under the same pseudonym key, maybe
    nothing), the release is also protected joined by pseudonym with those."""
    _check_columns(data, policy)
    _check_subjects(data, policy.dataset.subject)
    _check_hierarchies(policy, hierarchies)
    release = policy.release
    subject = policy.dataset.subject
    if subject and pseudonym_key is None:
        raise InvalidRequest(
            f"the subject column {subject!r} needs a pseudonym key",
            field="pseudonym_key",
            code="missing_pseudonym_key",
        )
    if held is not None and not subject:
        raise InvalidRequest(
            "a ledger of microdata releases keeps each subject's pseudonym: the policy names "
            "no subject column",
            field="dataset.subject",
            code="missing_subject",
        )
    qi_names, sensitive = list(release.quasi_identifiers), list(release.sensitive)
    pseudonyms = None
    if subject:
        assert pseudonym_key is not None
        pseudonyms = pseudonymize(data[subject].astype(str), pseudonym_key)
    table = encode(data, qi_names, sensitive, hierarchies)
    manifest: dict[str, Any] = {"algorithm": release.algorithm, "records": table.records}
    if release.algorithm == "optimal":
        # The search checks the classes joined with the held releases: it may choose a
        # coarser node than alone, where joining them tells less.
        linked = table
        if held and pseudonyms is not None:
            codes = held_codes(pseudonyms, held)
            linked = encode(data, qi_names, sensitive, hierarchies, codes)
        kept, record_class, generalized = _optimal(
            table, linked, policy, hierarchies, held or (), manifest
        )
    else:
        part, labels = _run_mondrian(table, policy, hierarchies)
        kept = np.ones(table.records, dtype=np.bool_)
        record_class = part[table.row_group]
        generalized = {
            name: np.asarray(values, dtype=object)[record_class] for name, values in labels.items()
        }
    out = pd.DataFrame(index=data.index)
    if subject:
        out[subject] = pseudonyms
    for name in qi_names:
        out[name] = generalized[name]
    for name in sensitive:
        out[name] = data[name]
    if held is not None:
        assert pseudonyms is not None
        kept = _joint(table, record_class, kept, pseudonyms, held, release.protection)
        alone = ~failing_records(
            table, [record_class], np.ones(len(kept), dtype=np.bool_), release.protection
        )
        manifest["linkage"] = {
            "held_releases": [h.name for h in held],
            "records_suppressed": int((alone & ~kept).sum()),
        }
    chosen = out[kept]
    order = _release_order(chosen, subject)
    released = chosen.iloc[order].reset_index(drop=True)
    classes = None
    if held is not None:
        numbers = pd.factorize(record_class[kept][order])[0]
        classes = dict(zip(released[subject], (int(n) for n in numbers), strict=True))
    sizes = np.bincount(record_class[kept]).astype(np.float64)
    manifest["records_released"] = int(kept.sum())
    manifest["records_suppressed"] = int((~kept).sum())
    manifest["classes"] = int((sizes > 0).sum())
    manifest["risk"] = risk_report(sizes, release.risk.threshold, release.risk.population)
    manifest["measured"] = measure(released, qi_names, sensitive)
    return MicrodataResult(released, manifest, classes)


def _optimal(
    table: Microtable,
    linked: Microtable,
    policy: MicrodataPolicy,
    hierarchies: Mapping[str, Hierarchy],
    held: Sequence[HeldMicrodata],
    manifest: dict[str, Any],
) -> tuple[npt.NDArray[np.bool_], Codes, dict[str, Any]]:
    """The optimal node, its classes joined with the held releases' (``linked``; ``table``
    when nothing is held): per record, whether it is kept, its released class and its
    generalized values."""
    release = policy.release
    protection = joint_protection(release.protection, held)
    search = LatticeSearch(linked, protection, release.metric)
    try:
        result = search.run()
    except PolicyViolation as refused:
        if linked is table:
            raise
        # Impossible alone too: that is the answer (no_solution), else the held releases are.
        LatticeSearch(table, release.protection, release.metric).run()
        reason = f"no generalization keeps every joint class protected ({refused.detail})"
        raise refuse_linkable(held, reason) from None
    node = result.node
    released = search.released_classes(node)
    kept = result.classes.kept[result.classes.cls]
    # The classes as released, and the records suppressed apart: without held releases these
    # are the search's own classes.
    shown, count = group_ids([released, kept.astype(np.int64)], [int(released.max()) + 1, 2])
    shown_kept = np.zeros(count, dtype=np.bool_)
    shown_kept[shown] = kept
    sizes = np.bincount(shown, weights=linked.weights, minlength=count).astype(np.float64)
    classes = ClassTable(shown, sizes, shown_kept)
    columns = linked.quasi_identifiers
    manifest["node"] = {
        c.name: _level_name(hierarchies[c.name], lv) for c, lv in zip(columns, node, strict=True)
    }
    manifest["node_levels"] = list(node)
    manifest["lattice"] = {"nodes": result.lattice_size, "checked": result.checked}
    manifest["utility"] = search.utility.report(node, classes)
    metric = search.utility.value(node, classes)
    manifest["metric"] = {"name": release.metric, "value": round(metric, 6)}
    generalized = {
        c.name: np.asarray(c.labels[lv], dtype=object)[c.ladders[lv][c.codes]]
        for c, lv in zip(columns, node, strict=True)
    }
    return kept[linked.row_group], released[linked.row_group], generalized


def _joint(
    table: Microtable,
    record_class: Codes,
    kept: npt.NDArray[np.bool_],
    pseudonyms: list[str],
    held: Sequence[HeldMicrodata],
    protection: ProtectionSpec,
) -> npt.NDArray[np.bool_]:
    """The records kept once those whose joint class with the held releases fails the
    protection are suppressed too (Mondrian's, or none after the search); refused past the
    suppression limit."""
    groups = [record_class, *held_codes(pseudonyms, held)]
    joint = joint_protection(protection, held)
    linked = failing_records(table, groups, kept, joint)
    linked |= absent_failing(table, pseudonyms, kept & ~linked, held, joint)
    count, suppressed = int(linked.sum()), int((~kept).sum())
    limit = protection.suppressible(table.records)
    if count and count + suppressed > limit:
        reason = (
            f"{count} records of this release would sit in joint classes that fail the "
            f"protection; suppressing them with the {suppressed} already suppressed would "
            f"suppress {count + suppressed} of {table.records} records, over the limit of {limit}"
        )
        raise refuse_linkable(held, reason)
    return kept & ~linked


def _release_order(records: pd.DataFrame, subject: str | None) -> Codes:
    """The order records are listed in: by pseudonym (a keyed shuffle), else by their released
    values; never the data's own order, which a file sorted by a finer value than the one
    released (a commune, a date) would tell by row numbers."""
    keys: list[npt.NDArray[np.integer[Any]]]
    if subject:
        keys = [np.array([int(p[:16], 16) for p in records[subject]], dtype=np.uint64)]
    else:
        keys = [pd.factorize(records[c].astype(str), sort=True)[0] for c in records.columns]
    order: Codes = np.lexsort(keys[::-1])
    return order


def _level_name(hierarchy: Hierarchy, level: int) -> str:
    return hierarchy.levels[level] if level < len(hierarchy.levels) else "*"
