"""The engine's :class:`~anonymization.ledger.Ledger` protocol backed by the service database.

Reads and writes go through the caller's session: a release's ledger entry commits in the same
transaction as the release record and its audit event, or not at all.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anonymization.ledger import HeldRelease, read_held_microdata
from anonymization.microdata.linkage import HeldMicrodata
from policies.decisions import Holdings
from service.extracts.models import Extract
from service.ledger.models import LedgerEntry, MicrodataLedgerEntry


class DatabaseLedger:
    """What each partner holds, in the ``ledger_entry`` table; keys are partner ids."""

    def __init__(self, session: Session, extract_id: uuid.UUID | None = None) -> None:
        self.session = session
        self.extract_id = extract_id

    def held(self, partner: str, dataset: str) -> list[HeldRelease]:
        """Every release of ``dataset`` the partner received, oldest first."""
        return [held for held, _ in held_by_extract(self.session, uuid.UUID(partner), dataset)]

    def record(self, partner: str, release: HeldRelease) -> None:
        """Add the release to the partner's ledger (flushed, committed by the caller)."""
        if self.extract_id is None:
            raise ValueError("a ledger entry belongs to an extract")
        block = release.block
        self.session.add(
            LedgerEntry(
                partner_id=uuid.UUID(partner),
                extract_id=self.extract_id,
                dataset=release.dataset,
                request=json.dumps(release.request, sort_keys=True),
                context=release.context,
                dimensions=json.dumps(release.dimensions),
                totals=int(block.totals),
                additive=json.dumps(sorted(block.additive)),
                nonnegative=json.dumps(sorted(block.nonnegative)),
                cells=release.cells_json(),
            )
        )
        self.session.flush()


def held_by_extract(
    session: Session, partner_id: uuid.UUID, dataset: str
) -> list[tuple[HeldRelease, uuid.UUID]]:
    """Every release of ``dataset`` the partner received, oldest first, with its extract id."""
    entries = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.partner_id == partner_id, LedgerEntry.dataset == dataset)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    found = []
    for entry in entries:
        row: dict[str, Any] = {column: getattr(entry, column) for column in _COLUMNS}
        found.append((HeldRelease.from_row(cast(Any, row)), entry.extract_id))
    return found


def count_held(session: Session, partner_id: uuid.UUID, dataset: str) -> int:
    """How many releases of ``dataset`` (aggregate or microdata) the partner holds (to detect a
    concurrent release)."""
    return sum(
        int(
            session.scalar(
                select(func.count())
                .select_from(entry)
                .where(entry.partner_id == partner_id, entry.dataset == dataset)
            )
            or 0
        )
        for entry in (LedgerEntry, MicrodataLedgerEntry)
    )


def holdings(
    session: Session, partner_id: uuid.UUID, dataset: str, agreement_id: uuid.UUID
) -> Holdings:
    """What the partner holds of ``dataset``, each release named by its extract: microdata
    releases under ``agreement_id`` (pseudonyms keyed like this agreement's, whatever the
    version) apart from those under other agreements."""
    aggregate = session.scalars(
        select(LedgerEntry.extract_id)
        .where(LedgerEntry.partner_id == partner_id, LedgerEntry.dataset == dataset)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    microdata = session.execute(
        select(MicrodataLedgerEntry.extract_id, Extract.agreement_id)
        .join(Extract, Extract.id == MicrodataLedgerEntry.extract_id)
        .where(
            MicrodataLedgerEntry.partner_id == partner_id,
            MicrodataLedgerEntry.dataset == dataset,
        )
        .order_by(MicrodataLedgerEntry.created_at, MicrodataLedgerEntry.id)
    ).all()
    return Holdings.of(
        (f"extract {extract}" for extract in aggregate),
        {f"extract {extract}": agreement for extract, agreement in microdata},
        agreement_id,
    )


def held_microdata(session: Session, partner_id: uuid.UUID, scope: str) -> list[HeldMicrodata]:
    """Every microdata release the partner received under the pseudonym key ``scope`` names,
    oldest first, each named by its extract."""
    entries = session.scalars(
        select(MicrodataLedgerEntry)
        .where(MicrodataLedgerEntry.partner_id == partner_id, MicrodataLedgerEntry.scope == scope)
        .order_by(MicrodataLedgerEntry.created_at, MicrodataLedgerEntry.id)
    )
    return [
        read_held_microdata(e.dataset, e.scope, e.k, e.classes, f"extract {e.extract_id}")
        for e in entries
    ]


def record_microdata(
    session: Session, partner_id: uuid.UUID, extract_id: uuid.UUID, held: HeldMicrodata
) -> None:
    """Add a microdata release to the partner's ledger (flushed, committed by the caller)."""
    session.add(
        MicrodataLedgerEntry(
            partner_id=partner_id,
            extract_id=extract_id,
            dataset=held.dataset,
            scope=held.scope,
            k=held.k,
            classes=json.dumps(held.classes),
        )
    )
    session.flush()


_COLUMNS = (
    "dataset",
    "request",
    "context",
    "dimensions",
    "totals",
    "additive",
    "nonnegative",
    "cells",
)
