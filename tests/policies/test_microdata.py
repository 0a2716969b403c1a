"""The microdata rules of the pure policies layer: what Mondrian can split."""

from __future__ import annotations

from typing import Any

import pytest

from anonymization.errors import InvalidRequest
from policies.microdata import MicrodataReleaseSpec, check_mondrian
from policies.models import DatasetSpec

DATASET = DatasetSpec.model_validate(
    {
        "subject": "person",
        "columns": {
            "visit": {"type": "time"},
            "when": {"hierarchy": "time"},
            "age": {"hierarchy": "bands"},
            "job": {"hierarchy": "jobs"},
            "departement": {"hierarchy": "geo_fr", "level": "departement"},
            "sex": {},
            "height": {},
        },
    }
)
HIERARCHIES: dict[str, Any] = {"bands": {"bands": [5, 10]}, "jobs": "jobs.csv"}
TYPES = {"visit": "date", "when": "date", "age": "number", "sex": "text", "height": "number"}


def release(algorithm: str, **qis: dict[str, str]) -> MicrodataReleaseSpec:
    return MicrodataReleaseSpec.model_validate(
        {"quasi_identifiers": qis, "protection": {"k": 2}, "algorithm": algorithm}
    )


@pytest.mark.parametrize(
    ("qis", "column"),
    [
        ({"visit": {}}, "visit"),
        ({"when": {}}, "when"),
        ({"age": {}, "sex": {"hierarchy": "time"}}, "sex"),
        ({"age": {}, "sex": {}}, "sex"),
    ],
)
def test_mondrian_refuses_times_and_plain_text_naming_the_quasi_identifier(
    qis: dict[str, dict[str, str]], column: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_mondrian(DATASET, HIERARCHIES, release("mondrian", **qis), TYPES)
    assert raised.value.field == f"release.quasi_identifiers.{column}"
    assert raised.value.code == "mondrian_unsupported"
    check_mondrian(DATASET, HIERARCHIES, release("optimal", **qis), TYPES)  # its own rules


def test_mondrian_accepts_bands_tables_codes_and_numbers() -> None:
    qis = {c: {} for c in ("age", "job", "departement", "height")}
    check_mondrian(DATASET, HIERARCHIES, release("mondrian", **qis), TYPES)
    # Without the stored types (offline), a column with no hierarchy is left to the engine.
    check_mondrian(DATASET, HIERARCHIES, release("mondrian", sex={}))
