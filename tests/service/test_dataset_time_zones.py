"""Through the service, a zoned time is grouped and filtered by its clock time in its own zone,
whatever the server's time zone: a Parquet upload in Europe/Paris (winter and summer), its
microdata, and a PostgreSQL ``timestamptz`` snapshot (UTC, or a view's local clock time)."""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.db import make_engine
from tests.service.journey import make_agreement, request_and_wait

POLICY: dict[str, Any] = {
    "dataset": {
        "subject": "card",
        "columns": {"paid_at": {"hierarchy": "time"}, "amount": {"type": "measure"}},
    }
}
RELEASE: dict[str, Any] = {
    "dimensions": {"paid_at": "day"},
    "measures": {"amount": ["sum"]},
    "protection": {"k": 5},
}
# Paris clock times, five cards each: around midnight on 1 January (+01:00) and 1 July (+02:00).
CLOCK_TIMES = ["2024-12-31 23:30", "2025-01-01 00:30", "2025-07-01 00:30"]
MONTHS = {"2024-12": "5", "2025-01": "5", "2025-07": "5"}


def _paris_parquet() -> bytes:
    times = pd.to_datetime([t for t in CLOCK_TIMES for _ in range(5)]).tz_localize("Europe/Paris")
    frame = pd.DataFrame({"card": [f"c{i}" for i in range(15)], "paid_at": times, "amount": 1.0})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _register(client: TestClient, admin: dict[str, str], content: bytes) -> dict[str, Any]:
    response = client.post(
        "/datasets",
        data={"name": f"payments-{uuid.uuid4().hex[:6]}", "policy": json.dumps(POLICY)},
        files={"file": ("payments.parquet", content, "application/octet-stream")},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _released(
    client: TestClient, headers: dict[str, str], agreement_id: str, request: dict[str, Any]
) -> dict[str, str]:
    done = request_and_wait(client, headers, agreement_id, {**request, "format": "csv"})
    assert done["status"] == "succeeded", done
    data = client.get(f"/extracts/{done['id']}/download", headers=headers).content
    table = pd.read_csv(io.BytesIO(data), dtype=str)
    return dict(zip(table["paid_at"], table["subjects"], strict=True))


@pytest.mark.usefixtures("machine_zone")
def test_a_paris_parquet_upload_is_released_by_its_clock_time(
    client: TestClient, admin: dict[str, str], make_partner: Callable[[str], dict[str, Any]]
) -> None:
    """Accepted (its offset changes in summer, its zone does not), released by Paris months,
    filtered by Paris days, and its microdata are at the same Paris days."""
    dataset = _register(client, admin, _paris_parquet())
    assert dataset["columns"]["paid_at"] == "date"
    partner = make_partner("Tourism office")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"], release=RELEASE)
    months = {"group_by": {"paid_at": "month"}, "measures": ["subjects"]}
    assert _released(client, partner["headers"], agreement["id"], months) == MONTHS
    first = {"paid_at": {"from": "2025-01-01", "to": "2025-01-01"}}
    days = {"group_by": {"paid_at": "day"}, "measures": ["subjects"], "filters": first}
    assert _released(client, partner["headers"], agreement["id"], days) == {"2025-01-01": "5"}

    microdata = {"kind": "microdata", "quasi_identifiers": {"paid_at": {}}, "sensitive": []}
    microdata["protection"] = {"k": 5}
    laboratory = make_partner("Laboratory")  # one kind of release per partner and dataset
    held = make_agreement(
        client, admin, laboratory["id"], dataset["id"], release=microdata, limits={}
    )
    whole = {"kind": "microdata", "format": "csv"}
    done = request_and_wait(client, laboratory["headers"], held["id"], whole)
    assert done["status"] == "succeeded", done
    data = client.get(f"/extracts/{done['id']}/download", headers=laboratory["headers"]).content
    records = pd.read_csv(io.BytesIO(data), dtype=str)
    assert Counter(records["paid_at"]) == {"2024-12-31": 5, "2025-01-01": 5, "2025-07-01": 5}


@pytest.mark.usefixtures("machine_zone")
def test_a_timestamptz_snapshot_is_grouped_by_utc_or_by_a_view_s_clock_time(
    client: TestClient,
    admin: dict[str, str],
    make_partner: Callable[[str], dict[str, Any]],
    postgresql_url: str,
) -> None:
    """A timestamptz holds an instant, no zone: the snapshot keeps it in UTC, grouped by its UTC
    clock time (00:30 in Paris on 1 January is 23:30 UTC on 31 December). A view giving the
    Paris clock time (``AT TIME ZONE``, a timestamp without zone) is grouped by that."""
    table = f"paid_{uuid.uuid4().hex[:8]}"
    source = make_engine(postgresql_url)
    # 03:30 in Paris on 1 March is 02:30 UTC, still in March: not 21:30 in New York in February.
    clocks = [*CLOCK_TIMES, "2025-03-01 03:30"]
    rows = ", ".join(
        f"('c{i}', TIMESTAMP '{clock}' AT TIME ZONE 'Europe/Paris', 1.0)"
        for i, clock in enumerate(t for t in clocks for _ in range(5))
    )
    paris = "card, paid_at AT TIME ZONE 'Europe/Paris' AS paid_at, amount"
    with source.begin() as connection:
        connection.execute(
            text(f"CREATE TABLE {table} (card text, paid_at timestamptz, amount float8)")
        )
        connection.execute(text(f"INSERT INTO {table} VALUES {rows}"))
        connection.execute(text(f"CREATE VIEW {table}_paris AS SELECT {paris} FROM {table}"))
    try:
        partner = make_partner("Tourism office")
        request = {"group_by": {"paid_at": "month"}, "measures": ["subjects"]}
        released = []
        for name in (table, f"{table}_paris"):
            body = {
                "name": name,
                "policy": POLICY,
                "source": {"url": postgresql_url, "table": name},
            }
            response = client.post("/datasets/sql", json=body, headers=admin)
            assert response.status_code == 201, response.text
            dataset = response.json()["id"]
            agreement = make_agreement(client, admin, partner["id"], dataset, release=RELEASE)
            released.append(_released(client, partner["headers"], agreement["id"], request))
        assert released[0] == {"2024-12": "10", "2025-03": "5", "2025-06": "5"}
        assert released[1] == {**MONTHS, "2025-03": "5"}
    finally:
        with source.begin() as connection:
            connection.execute(text(f"DROP VIEW {table}_paris"))
            connection.execute(text(f"DROP TABLE {table}"))
        source.dispose()
