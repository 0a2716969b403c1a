"""Small tables and hierarchies for the microdata tests, built from hypothesis draws."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from hypothesis import strategies as st

from anonymization.hierarchies import TableHierarchy
from anonymization.microdata.config import MicrodataPolicy

QUASI_IDENTIFIERS = ("age", "letter", "flag")
HIERARCHIES = {
    "age": TableHierarchy("age", [[str(v), str(v // 2), str(v // 4), "*"] for v in range(8)]),
    "letter": TableHierarchy(
        "letter", [["a", "ab", "*"], ["b", "ab", "*"], ["c", "cd", "*"], ["d", "cd", "*"]]
    ),
    "flag": TableHierarchy("flag", [["0", "*"], ["1", "*"], ["2", "*"]]),
    "disease": TableHierarchy(
        "disease", [["flu", "light", "*"], ["cold", "light", "*"], ["cancer", "heavy", "*"]]
    ),
}

row = st.tuples(
    st.integers(0, 7),
    st.sampled_from("abcd"),
    st.sampled_from("012"),
    st.sampled_from(["flu", "cold", "cancer"]),
)
rows = st.lists(row, min_size=6, max_size=40)

protections = st.fixed_dictionaries(
    {"k": st.integers(2, 4), "suppression_limit": st.sampled_from([0.0, 0.1, 0.3])},
    optional={
        "l": st.sampled_from(
            [
                {"kind": "distinct", "l": 2},
                {"kind": "entropy", "l": 2},
                {"kind": "recursive", "l": 2, "c": 2.0},
            ]
        ),
        "t": st.sampled_from(
            [
                {"max": 0.4, "distance": "equal"},
                {"max": 0.3, "distance": "ordered"},
                {"max": 0.3, "distance": "hierarchical"},
            ]
        ),
    },
)

metrics = st.sampled_from(["loss", "entropy", "discernibility", "average_class_size"])


def table(drawn: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    """The drawn rows as a text table with a subject column."""
    frame = pd.DataFrame(drawn, columns=["age", "letter", "flag", "disease"]).astype(str)
    frame.insert(0, "meter", [f"M{i:05d}" for i in range(len(frame))])
    return frame


def policy(
    protection: dict[str, object],
    metric: str = "loss",
    algorithm: str = "optimal",
    quasi_identifiers: Sequence[str] = QUASI_IDENTIFIERS,
    subject: str | None = None,
) -> MicrodataPolicy:
    """A policy over the quasi-identifiers (default: all three) with ``disease`` sensitive and
    ``subject``, if given, pseudonymized."""
    return MicrodataPolicy.model_validate(
        {
            "dataset": {"subject": subject, "columns": {"disease": {"hierarchy": "disease"}}},
            "hierarchies": {name: f"{name}.csv" for name in HIERARCHIES},
            "release": {
                "quasi_identifiers": {q: {"hierarchy": q} for q in quasi_identifiers},
                "sensitive": ["disease"],
                "protection": protection,
                "metric": metric,
                "algorithm": algorithm,
            },
        }
    )
