"""Each released class counts distinct subjects: a subject that repeats, or a record missing a
value the release reads, is refused by the engine (whatever front end calls it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymization.bands import BandHierarchy
from anonymization.errors import DataError, HierarchyError, PolicyViolation
from anonymization.microdata.config import MicrodataPolicy
from anonymization.microdata.pseudonyms import agreement_key
from anonymization.microdata.release import anonymize_microdata
from tests.anonymization.microdata_factories import HIERARCHIES, QUASI_IDENTIFIERS, row

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = agreement_key(b"s" * 32, "agreement")


def _policy(k: int, algorithm: str, suppression: float) -> MicrodataPolicy:
    return MicrodataPolicy.model_validate(
        {
            "dataset": {"subject": "meter"},
            "hierarchies": {name: f"{name}.csv" for name in HIERARCHIES},
            "release": {
                "quasi_identifiers": {q: {"hierarchy": q} for q in QUASI_IDENTIFIERS},
                "sensitive": ["disease"],
                "protection": {"k": k, "suppression_limit": suppression},
                "algorithm": algorithm,
            },
        }
    )


# A subject from a small pool (some repeat) before each drawn row.
records = st.lists(
    st.tuples(st.integers(0, 5), row).map(lambda pair: (pair[0], *pair[1])),
    min_size=1,
    max_size=30,
)


@SETTINGS
@given(
    records,
    st.integers(2, 4),
    st.sampled_from(["optimal", "mondrian"]),
    st.sampled_from([0.0, 0.3]),
)
def test_every_released_class_has_k_distinct_subjects(drawn, k, algorithm, suppression):
    data = pd.DataFrame(drawn, columns=["meter", *QUASI_IDENTIFIERS, "disease"]).astype(str)
    policy = _policy(k, algorithm, 0.0 if algorithm == "mondrian" else suppression)
    repeated = data["meter"].duplicated().any()
    try:
        result = anonymize_microdata(data, policy, HIERARCHIES, KEY)
    except PolicyViolation as error:
        if error.code == "subject_repeated":
            assert repeated
            assert error.field == "dataset.subject"
            return
        assert error.code == "no_solution"
        return
    assert not repeated, "a subject repeating in the data was released"
    subjects = result.table.groupby(list(QUASI_IDENTIFIERS))["meter"].nunique()
    assert subjects.min() >= k


@pytest.mark.parametrize("column", ["meter", "age", "letter", "disease"])
@pytest.mark.parametrize("missing", [None, np.nan])
@pytest.mark.parametrize("algorithm", ["optimal", "mondrian"])
def test_a_missing_value_is_refused_naming_its_column(column, missing, algorithm):
    data = pd.DataFrame(
        {
            "meter": [f"M{i}" for i in range(8)],
            "age": [str(i % 8) for i in range(8)],
            "letter": list("abcdabcd"),
            "flag": list("01201201"),
            "disease": ["flu", "cold", "cancer", "flu"] * 2,
        },
        dtype=object,
    )
    data.loc[3, column] = missing
    with pytest.raises(DataError) as refused:
        anonymize_microdata(data, _policy(2, algorithm, 0.0), HIERARCHIES, KEY)
    assert refused.value.field == column
    assert "1 records have no" in refused.value.detail


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "Infinity", "1e400"])
@pytest.mark.parametrize("algorithm", ["optimal", "mondrian"])
def test_a_banded_value_that_is_not_a_finite_number_is_refused_naming_its_column(value, algorithm):
    # It was banded as `[nan,nan)`: a class of every such value, released as if it were a band.
    data = pd.DataFrame({"kwh": [str(300 * i) for i in range(12)] + [value] * 3})
    policy = MicrodataPolicy.model_validate(
        {
            "hierarchies": {"kwh": {"bands": [1000, 2000]}},
            "release": {
                "quasi_identifiers": {"kwh": {"hierarchy": "kwh"}},
                "protection": {"k": 3},
                "algorithm": algorithm,
            },
        }
    )
    hierarchies = {"kwh": BandHierarchy("kwh", [1000, 2000])}
    with pytest.raises(HierarchyError) as refused:
        anonymize_microdata(data, policy, hierarchies, None)
    assert refused.value.field == "kwh"
    assert refused.value.code == "value_not_covered"
    assert repr(value) in refused.value.detail


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records.map(lambda drawn: list({d[0]: d for d in drawn}.values())),  # one record a subject
    st.integers(2, 3),
    st.sampled_from(["optimal", "mondrian"]),
    st.randoms(use_true_random=False),
)
def test_the_released_file_does_not_depend_on_the_order_of_the_records(
    drawn, k, algorithm, shuffler
):
    # The records came out in the order they came in: a file sorted by a finer value than the
    # one released (a commune, a date) told it through the row numbers of the release.
    data = pd.DataFrame(drawn, columns=["meter", *QUASI_IDENTIFIERS, "disease"]).astype(str)
    order = list(range(len(data)))
    shuffler.shuffle(order)
    policy = _policy(k, algorithm, 0.0)
    try:
        first = anonymize_microdata(data, policy, HIERARCHIES, KEY)
    except PolicyViolation:
        return
    second = anonymize_microdata(data.iloc[order], policy, HIERARCHIES, KEY)
    pd.testing.assert_frame_equal(first.table, second.table)
    assert first.manifest == second.manifest
