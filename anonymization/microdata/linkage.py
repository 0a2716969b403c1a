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


def _held_codes(pseudonyms: Sequence[str], held: HeldMicrodata) -> tuple[Codes, int]:
    codes = np.fromiter(
        (held.classes.get(p, ABSENT) for p in pseudonyms), dtype=np.int64, count=len(pseudonyms)
    )
    return codes + 1, max(held.classes.values(), default=0) + 2


def joint_failures(
    table: Microtable,
    record_class: Codes,
    kept: Mask,
    pseudonyms: Sequence[str],
    held: Sequence[HeldMicrodata],
    protection: ProtectionSpec,
) -> Mask:
    """The kept records whose joint class (released class, class in each held release) fails
    ``protection``: k (at least each held release's too), and l-diversity and t-closeness
    (against the whole input) if it asks."""
    protection = protection.model_copy(update={"k": max([protection.k, *(h.k for h in held)])})
    failing = np.zeros(len(kept), dtype=np.bool_)
    rows = np.flatnonzero(kept)
    if not held or not len(rows):
        return failing
    names = [pseudonyms[int(i)] for i in rows]
    columns = [record_class[rows]]
    cards = [int(record_class.max()) + 1]
    for release in held:
        codes, card = _held_codes(names, release)
        columns.append(codes)
        cards.append(card)
    joint, count = group_ids(columns, cards)
    weights = np.ones(len(rows), dtype=np.float64)
    sizes = np.bincount(joint, minlength=count).astype(np.float64)
    sensitive = []
    for column, codes in zip(table.sensitive, table.sensitive_codes, strict=True):
        whole = SensitiveValues.of(column, codes, table.weights)
        sensitive.append(SensitiveValues(column, codes[table.row_group][rows], whole.overall))
    passing = satisfying_classes(joint, sizes, weights, sensitive, protection)
    failing[rows] = ~passing[joint]
    return failing


def refuse_linkable(
    held: Sequence[HeldMicrodata], linked: int, suppressed: int, records: int, limit: int
) -> PolicyViolation:
    """The refusal when suppressing the linkable records would pass the suppression limit."""
    names = ", ".join(h.name for h in held)
    return PolicyViolation(
        f"joined by pseudonym with the held release(s) {names}, {linked} records of this "
        f"release would sit in joint classes that fail the protection; suppressing them with "
        f"the {suppressed} already suppressed would suppress {linked + suppressed} of {records} "
        f"records, over the limit of {limit}: nothing is released",
        field="ledger",
        code="linkable_with_held",
    )
