"""The ledger: what each partner has already received, so that later releases are protected
jointly with it.

The engine needs only the small :class:`Ledger` protocol; :class:`SQLiteLedger` keeps it in one
SQLite file for the CLI, and the service can back the same protocol with its database. A held
release keeps its request (to rebuild its population filters), its dimensions with their levels,
and every cell with its true values and why it was suppressed (None where released): the ledger
belongs to the data holder, never to the partner. With noise, a cell's ``subjects`` is kept as
published (what the partner holds), with how far it may be from the truth. A microdata release
keeps only each released pseudonym's class number, and which pseudonym key made them
(:mod:`anonymization.microdata.linkage`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from anonymization.blocks import Block
from anonymization.errors import DataError
from anonymization.microdata.linkage import HeldMicrodata

ERROR = "error:"
BUSY_SECONDS = 5.0  # how long to wait for another process's write to the ledger file
SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    dataset TEXT NOT NULL,
    request TEXT NOT NULL,
    context TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    totals INTEGER NOT NULL,
    additive TEXT NOT NULL,
    nonnegative TEXT NOT NULL,
    cells TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS releases_partner ON releases (partner, dataset);
CREATE TABLE IF NOT EXISTS microdata_releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    dataset TEXT NOT NULL,
    scope TEXT NOT NULL,
    k INTEGER NOT NULL,
    classes TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS microdata_releases_partner ON microdata_releases (partner, scope);
"""
TABLES = {"releases", "microdata_releases"}


@dataclass(frozen=True)
class HeldRelease:
    """One release a partner holds: its request, population context and cells."""

    dataset: str
    request: dict[str, Any]
    context: str
    dimensions: dict[str, str]
    block: Block = field(repr=False)

    def cells_json(self) -> str:
        """The cells as JSON records: labels, values, reason, and ``error:<quantity>`` where a
        published value is known only within that distance (noisy counts are kept as
        published, so later releases are protected against what the partner actually holds)."""
        frame = self.block.labels.copy()
        for name, values in self.block.values.items():
            frame[name] = values
        for name, error in self.block.errors.items():
            frame[ERROR + name] = error
        frame["reason"] = self.block.reason
        return frame.to_json(orient="records", force_ascii=False)

    @staticmethod
    def from_row(row: sqlite3.Row) -> HeldRelease:
        """A held release read back from its stored row; a row that does not read back (edited
        or damaged) is a DataError naming the ledger."""
        try:
            return HeldRelease._read(row)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(
                f"a release in the ledger does not read back ({type(error).__name__}: "
                f"{str(error)[:200]}): the ledger was edited or damaged",
                field="ledger",
                code="ledger_damaged",
            ) from None

    @staticmethod
    def _read(row: sqlite3.Row) -> HeldRelease:
        dimensions = json.loads(row["dimensions"])
        if not isinstance(dimensions, dict):
            raise TypeError(f"dimensions must be an object, not {dimensions!r}")
        frame = pd.DataFrame(json.loads(row["cells"]))
        if frame.empty:
            # A release of no cells is stored as ``[]``, which names no column.
            frame = pd.DataFrame(columns=[*dimensions, "reason"])
        rest = [c for c in frame.columns if c not in dimensions and c != "reason"]
        values = [c for c in rest if not c.startswith(ERROR)]
        errors = [c for c in rest if c.startswith(ERROR)]
        block = Block(
            frame[list(dimensions)].astype(str),
            {name: frame[name].to_numpy(dtype=float) for name in values},
            np.array([r if isinstance(r, str) else None for r in frame["reason"]], dtype=object),
            bool(row["totals"]),
            frozenset(json.loads(row["additive"])),
            frozenset(json.loads(row["nonnegative"])),
            {name[len(ERROR) :]: frame[name].to_numpy(dtype=float) for name in errors},
        )
        return HeldRelease(
            row["dataset"], json.loads(row["request"]), row["context"], dimensions, block
        )


class Ledger(Protocol):
    """What a partner holds, per dataset."""

    def held(self, partner: str, dataset: str) -> list[HeldRelease]:
        """Every release of ``dataset`` the partner received, oldest first."""

    def record(self, partner: str, release: HeldRelease) -> None:
        """Remember that the partner received ``release``."""


class SQLiteLedger:
    """A ledger in one SQLite file (the CLI's ``--ledger``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with self._connect() as con:
                tables = {
                    name
                    for (name,) in con.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                }
                if tables - TABLES:
                    raise DataError(
                        f"{path} is not a ledger: it holds other tables "
                        f"({', '.join(sorted(tables - TABLES)[:5])})",
                        field="ledger",
                    )
                con.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise DataError(
                    f"the ledger {path} is in use by another release (locked for "
                    f"{BUSY_SECONDS:g} s): run this one when it is done",
                    field="ledger",
                    code="ledger_busy",
                ) from None
            raise DataError(f"{path} is not a ledger: {error}", field="ledger") from None

    @contextmanager
    def _recording(self) -> Iterator[sqlite3.Connection]:
        """The connection of one recording transaction; a failure of the database (locked past
        BUSY_SECONDS, full disk, damaged file) is a DataError naming the ledger."""
        try:
            with self._connect() as con:
                yield con
        except sqlite3.Error as error:
            detail = f"cannot record the release in {self.path}: {error}; nothing was written"
            raise DataError(detail, field="ledger") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_SECONDS)
        con.row_factory = sqlite3.Row
        return con

    def held(self, partner: str, dataset: str) -> list[HeldRelease]:
        """Every release of ``dataset`` the partner received, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM releases WHERE partner = ? AND dataset = ? ORDER BY id",
                (partner, dataset),
            ).fetchall()
        return [HeldRelease.from_row(row) for row in rows]

    def recorded(self, partner: str) -> int:
        """How many releases (of any data, of either kind) the partner holds: read before what
        it holds, it lets the recording tell whether another run recorded one meanwhile."""
        with self._connect() as con:
            return _recorded(con, partner)

    def releases_of(self, partner: str, digest: str) -> tuple[list[str], dict[str, str]]:
        """What the partner holds of the data whose SHA-256 is ``digest`` (hex): the names of
        its aggregate releases, and of its microdata releases with their pseudonym scopes."""
        forms = (digest, f"sha256:{digest}")
        with self._connect() as con:
            aggregate = con.execute(
                "SELECT id, recorded_at FROM releases WHERE partner = ? AND dataset IN (?, ?) "
                "ORDER BY id",
                (partner, *forms),
            ).fetchall()
            microdata = con.execute(
                "SELECT id, recorded_at, scope FROM microdata_releases WHERE partner = ? "
                "AND dataset IN (?, ?) ORDER BY id",
                (partner, *forms),
            ).fetchall()
        return (
            [f"release {r['id']} of the ledger ({r['recorded_at']})" for r in aggregate],
            {_microdata_name(row): row["scope"] for row in microdata},
        )

    def record(self, partner: str, release: HeldRelease, read: int | None = None) -> None:
        """Remember that the partner received ``release`` (one transaction); with ``read``
        (:meth:`recorded` before the release was protected), refused if another release to the
        partner was recorded since."""
        block = release.block
        with self._recording() as con:
            if read is not None:
                _refuse_if_recorded_meanwhile(con, self.path, partner, read)
            con.execute(
                "INSERT INTO releases (partner, dataset, request, context, dimensions, totals, "
                "additive, nonnegative, cells) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    partner,
                    release.dataset,
                    json.dumps(release.request, sort_keys=True),
                    release.context,
                    json.dumps(release.dimensions),
                    int(block.totals),
                    json.dumps(sorted(block.additive)),
                    json.dumps(sorted(block.nonnegative)),
                    release.cells_json(),
                ),
            )

    def held_microdata(self, partner: str, scope: str) -> list[HeldMicrodata]:
        """Every microdata release the partner received under the pseudonym key ``scope``
        names (whatever the data file), oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM microdata_releases WHERE partner = ? AND scope = ? ORDER BY id",
                (partner, scope),
            ).fetchall()
        return [
            read_held_microdata(
                row["dataset"],
                row["scope"],
                row["k"],
                row["classes"],
                _microdata_name(row),
            )
            for row in rows
        ]

    def record_microdata(self, partner: str, release: HeldMicrodata, read: int) -> None:
        """Remember that the partner received the microdata ``release``: one transaction,
        refused (nothing recorded) if another release to the partner was recorded since ``read``
        (:meth:`recorded` before the release was protected)."""
        with self._recording() as con:
            _refuse_if_recorded_meanwhile(con, self.path, partner, read)
            con.execute(
                "INSERT INTO microdata_releases (partner, dataset, scope, k, classes) "
                "VALUES (?, ?, ?, ?, ?)",
                (partner, release.dataset, release.scope, release.k, json.dumps(release.classes)),
            )


def _microdata_name(row: sqlite3.Row) -> str:
    """How a held microdata release is named in refusals and manifests."""
    return f"microdata release {row['id']} of the ledger ({row['recorded_at']})"


def _recorded(con: sqlite3.Connection, partner: str) -> int:
    return sum(
        con.execute(f"SELECT count(*) FROM {table} WHERE partner = ?", (partner,)).fetchone()[0]
        for table in sorted(TABLES)
    )


def _refuse_if_recorded_meanwhile(
    con: sqlite3.Connection, path: Path, partner: str, read: int
) -> None:
    """Start the recording transaction (no other run can record until it ends) and refuse if
    the partner's releases are no longer the ``read`` ones: another run recorded one that this
    release was not protected against (or not checked against, being of the other kind)."""
    con.execute("BEGIN IMMEDIATE")
    if _recorded(con, partner) != read:
        raise DataError(
            f"another release to {partner!r} was recorded in {path} meanwhile (this one was "
            "protected without it): nothing was written; run this one again",
            field="ledger",
            code="ledger_changed",
        )


def read_held_microdata(dataset: str, scope: str, k: int, classes: str, name: str) -> HeldMicrodata:
    """A held microdata release read back from its stored classes (JSON: pseudonym → class
    number); one that does not read back is a DataError naming the ledger."""
    try:
        parsed = json.loads(classes)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in parsed.values()
    ):
        raise DataError(
            f"{name} does not read back: the ledger was edited or damaged",
            field="ledger",
            code="ledger_damaged",
        )
    return HeldMicrodata(dataset, scope, k, parsed, name)
