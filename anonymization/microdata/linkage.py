"""Microdata held by the partner: a new release is protected jointly with the releases whose
pseudonyms match its own (the same pseudonym key), which the partner can join record by record.

The partner who joins by pseudonym sees, for each record of the new release, the tuple of its
released class and its class in each held release (or that it was not there): every such joint
class must satisfy the protection the release's own classes satisfy. A held release is kept as
pseudonym → class number only: no value of the data, and nothing the partner does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from anonymization.errors import PolicyViolation
from anonymization.microdata.config import ProtectionSpec
from anonymization.microdata.encoding import Codes, Microtable, group_ids
from anonymization.microdata.models import SensitiveValues, satisfying_classes

Mask = npt.NDArray[np.bool_]
ABSENT = -1  # the subject is not in that held release (suppressed, or not in its data)


def link_scope(pseudonym_key: bytes) -> str:
    """Which releases can be joined by pseudonym: a digest of the pseudonym key (equal keys,
    equal pseudonyms), that does not reveal the key."""
    return hmac.new(pseudonym_key, b"partage/microdata-ledger/v1", hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class HeldMicrodata:
    """A microdata release a partner holds: its pseudonyms' released class numbers, and the k
    its classes were released with (a joint class narrows them: it must keep that k too)."""

    dataset: str
    scope: str
    k: int
    classes: dict[str, int] = field(repr=False)
    name: str = ""


def held_codes(pseudonyms: Sequence[str], held: Sequence[HeldMicrodata]) -> list[Codes]:
    """Per held release, each record's class there plus one (0: not in it)."""
    return [
        np.fromiter(
            (release.classes.get(p, ABSENT) + 1 for p in pseudonyms),
            dtype=np.int64,
            count=len(pseudonyms),
        )
        for release in held
    ]


def joint_protection(protection: ProtectionSpec, held: Sequence[HeldMicrodata]) -> ProtectionSpec:
    """The protection joint classes need: the release's, with k at least each held one's."""
    return protection.model_copy(update={"k": max([protection.k, *(h.k for h in held)])})


def failing_records(
    table: Microtable, groups: Sequence[Codes], among: Mask, protection: ProtectionSpec
) -> Mask:
    """The records ``among`` whose group (the tuple of ``groups``, codes per record) fails
    ``protection``: k, and l-diversity and t-closeness (against the whole input) if it asks."""
    failing = np.zeros(len(among), dtype=np.bool_)
    rows = np.flatnonzero(among)
    if not len(rows):
        return failing
    columns = [codes[rows] for codes in groups]
    group, count = group_ids(columns, [int(codes.max()) + 1 for codes in columns])
    weights = np.ones(len(rows), dtype=np.float64)
    sizes = np.bincount(group, minlength=count).astype(np.float64)
    sensitive = []
    for column, codes in zip(table.sensitive, table.sensitive_codes, strict=True):
        whole = SensitiveValues.of(column, codes, table.weights)
        sensitive.append(SensitiveValues(column, codes[table.row_group][rows], whole.overall))
    passing = satisfying_classes(group, sizes, weights, sensitive, protection)
    failing[rows] = ~passing[group]
    return failing


def absent_failing(
    table: Microtable,
    pseudonyms: Sequence[str],
    kept: Mask,
    held: Sequence[HeldMicrodata],
    protection: ProtectionSpec,
) -> Mask:
    """The kept records to suppress so that the held records this release leaves out do not
    sit, by their absence, in a joint class that fails ``protection``.

    A subject of a held release that is absent from this one (suppressed, or not in the data)
    is the joint class of its held classes and "absent": the partner sees it. Where such a
    group has fewer than k subjects (or, among those in the data, fails l-diversity or
    t-closeness), every kept record with the same held classes is suppressed too, so that the
    group becomes the held releases' own joint class, protected when those were released."""
    universe = sorted(set().union(*(h.classes for h in held)))
    failing = np.zeros(len(kept), dtype=np.bool_)
    if not universe:
        return failing
    columns = held_codes(universe, held)
    group, count = group_ids(columns, [int(c.max()) + 1 for c in columns])
    of_pseudonym = dict(zip(universe, group.tolist(), strict=True))
    record_group = np.fromiter(
        (of_pseudonym.get(p, -1) for p in pseudonyms), dtype=np.int64, count=len(pseudonyms)
    )
    shown = set(np.asarray(pseudonyms, dtype=object)[kept].tolist())
    released = np.fromiter((p in shown for p in universe), dtype=np.bool_, count=len(universe))
    absent = np.bincount(group[~released], minlength=count)
    bad = (absent > 0) & (absent < protection.k)
    left_out = (record_group >= 0) & ~kept
    if protection.l is not None or protection.t is not None:
        diversity = protection.model_copy(update={"k": 1})
        codes = held_codes(pseudonyms, held)
        bad[record_group[failing_records(table, codes, left_out, diversity)]] = True
    failing[(record_group >= 0) & kept] = bad[record_group[(record_group >= 0) & kept]]
    return failing


def refuse_linkable(held: Sequence[HeldMicrodata], reason: str) -> PolicyViolation:
    """The refusal of a release that cannot be protected joined with the held ones."""
    names = ", ".join(h.name for h in held)
    return PolicyViolation(
        f"joined by pseudonym with the held release(s) {names}, {reason}: nothing is released",
        field="ledger",
        code="linkable_with_held",
    )
