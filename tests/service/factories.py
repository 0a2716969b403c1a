"""Small synthetic datasets and the bodies that register them."""

from __future__ import annotations

import io
import json
import unicodedata
from typing import Any

import pandas as pd
from hypothesis import strategies as st

POLICY: dict[str, Any] = {
    "dataset": {
        "subject": "card_id",
        "identifiers": ["holder_name"],
        "columns": {
            "departement": {"hierarchy": "geo_fr", "level": "departement"},
            "date": {"hierarchy": "time"},
            "age": {"hierarchy": "age_bands"},
            "card_country": {},
            "amount": {"type": "measure"},
        },
    },
    "hierarchies": {"age_bands": {"bands": [5, 10]}},
}

RELEASE: dict[str, Any] = {
    "dimensions": {"departement": "departement", "date": "month", "card_country": "value"},
    "measures": {"amount": ["sum", "mean"]},
    "protection": {"k": 5, "dominance": {"n": 1, "percent": 85}},
}


def payments_frame(rows: int = 40) -> pd.DataFrame:
    departements = ["01", "2A", "69", "974"]
    return pd.DataFrame(
        {
            "card_id": [f"c{i % 17}" for i in range(rows)],
            "holder_name": [f"Holder {i % 17}" for i in range(rows)],
            "departement": [departements[i % 4] for i in range(rows)],
            "date": [f"2025-0{1 + i % 6}-1{i % 9}" for i in range(rows)],
            "age": [str(18 + i % 60) for i in range(rows)],
            "card_country": [["DE", "GB", "US"][i % 3] for i in range(rows)],
            "amount": [f"{10 + i * 1.5:.2f}" for i in range(rows)],
        }
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def dataset_form(name: str = "payments", policy: dict[str, Any] | None = None) -> dict[str, str]:
    return {"name": name, "policy": json.dumps(policy or POLICY)}


def agreement_body(partner_id: str, dataset_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "partner_id": partner_id,
        "dataset_id": dataset_id,
        "purpose": "Monthly tourism spending by département",
        "legal_basis": "public_task",
        "valid_from": "2025-01-01",
        "valid_until": "2030-12-31",
        "release": RELEASE,
        "limits": {"extracts_per_month": 10},
        "retention_days": 30,
        **changes,
    }


@st.composite
def name_variants(draw: st.DrawFn, originals: list[str]) -> tuple[str, str]:
    """One of ``originals`` and that name as someone else might type it: other case, blanks
    around, NFD or NFC."""
    name = draw(st.sampled_from(originals))
    upper = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    cased = "".join(
        character.upper() if flip else character.lower()
        for character, flip in zip(name, upper, strict=True)
    )
    blanks = st.text(" \t\u00a0\u3000", max_size=3)
    form = draw(st.sampled_from(["NFD", "NFC"]))
    return name, draw(blanks) + unicodedata.normalize(form, cased) + draw(blanks)
