"""Property tests: every released table satisfies its models, and the search is optimal."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymization.errors import PolicyViolation
from anonymization.hierarchies import TableHierarchy, builtin
from anonymization.microdata.config import MicrodataPolicy, ProtectionSpec
from anonymization.microdata.encoding import encode_table
from anonymization.microdata.lattice import LatticeSearch
from anonymization.microdata.release import anonymize_microdata
from tests.anonymization.microdata_factories import (
    HIERARCHIES,
    QUASI_IDENTIFIERS,
    metrics,
    policy,
    protections,
    rows,
    table,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _release(drawn, protection, metric="loss", algorithm="optimal"):
    try:
        return anonymize_microdata(
            table(drawn), policy(protection, metric, algorithm), HIERARCHIES, pseudonym_key=None
        )
    except PolicyViolation:
        return None


def _check_classes(released: pd.DataFrame, protection: dict, overall: pd.Series) -> None:
    """Recompute every model on the released rows with plain pandas."""
    for _, group in released.groupby(list(QUASI_IDENTIFIERS)):
        assert len(group) >= protection["k"]
        shares = group["disease"].value_counts(normalize=True)
        spec = protection.get("l")
        if spec and spec["kind"] == "distinct":
            assert group["disease"].nunique() >= spec["l"]
        if spec and spec["kind"] == "entropy":
            assert -(shares * np.log(shares)).sum() >= math.log(spec["l"]) - 1e-9
        if spec and spec["kind"] == "recursive":
            counts = group["disease"].value_counts().to_list()
            assert counts[0] < spec["c"] * sum(counts[spec["l"] - 1 :])
        t = protection.get("t")
        if t and t["distance"] == "equal":
            gap = shares.reindex(overall.index, fill_value=0.0) - overall
            assert 0.5 * gap.abs().sum() <= t["max"] + 1e-9


@SETTINGS
@given(rows, protections, metrics)
def test_released_table_satisfies_every_model(drawn, protection, metric):
    result = _release(drawn, protection, metric)
    if result is None:
        return
    data = table(drawn)
    limit = math.floor(protection["suppression_limit"] * len(data) + 1e-9)
    assert result.manifest["records_suppressed"] <= limit
    assert len(result.table) == len(data) - result.manifest["records_suppressed"]
    _check_classes(result.table, protection, data["disease"].value_counts(normalize=True))


@SETTINGS
@given(rows, protections)
def test_linkage_attack_finds_at_least_k_candidates(drawn, protection):
    """An attacker knowing a kept subject's exact QIs matches at least k released rows."""
    result = _release(drawn, protection)
    if result is None:
        return
    levels = result.manifest["node"]
    released = result.table[list(QUASI_IDENTIFIERS)].value_counts()
    for _, record in table(drawn).iterrows():
        key = tuple(
            HIERARCHIES[q].generalize([record[q]], levels[q])[record[q]] for q in QUASI_IDENTIFIERS
        )
        matches = int(released.get(key, 0))
        assert matches == 0 or matches >= protection["k"]


@SETTINGS
@given(rows, protections, metrics)
def test_search_finds_the_best_node_of_the_whole_lattice(drawn, protection, metric):
    data = table(drawn)
    encoded = encode_table(data, QUASI_IDENTIFIERS, ["disease"], HIERARCHIES)
    spec = ProtectionSpec.model_validate(protection)
    search = LatticeSearch(encoded, spec, metric)
    values = []
    for node in itertools.product(*(range(h) for h in search.heights)):
        classes = search.classes(node)
        if classes.suppressed <= search.limit:
            values.append(search.utility.value(node, classes))
    if not values:
        with pytest.raises(PolicyViolation, match="best node found"):
            search.run()
        return
    assert search.run().value == pytest.approx(min(values), rel=1e-9, abs=1e-9)


@SETTINGS
@given(rows, protections)
def test_mondrian_partitions_satisfy_every_model(drawn, protection):
    result = _release(drawn, {**protection, "suppression_limit": 0.0}, algorithm="mondrian")
    if result is None:
        return
    assert len(result.table) == len(drawn)
    _check_classes(result.table, protection, table(drawn)["disease"].value_counts(normalize=True))


GEO = builtin("geo_fr")
IRIS = ["060880101", "060880102", "060290101", "2A0040101", "2B0330101", "740100101", "010010101"]


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(IRIS), st.integers(1, 40)), min_size=6, max_size=60),
    st.integers(2, 5),
)
def test_mondrian_releases_geographic_codes_at_a_level_of_their_ladder(drawn, k):
    # INSEE codes look like numbers but are codes: each record's released code is its own
    # IRIS, commune, département, région or ``*``, never a numeric range nor a code stripped of
    # its leading zero; Corsica's 2A/2B codes split like the others.
    assert GEO is not None
    data = pd.DataFrame(drawn, columns=["iris", "kva"]).astype(str)
    data["row"] = [str(row) for row in range(len(data))]  # to find each record in the release
    policy = MicrodataPolicy.model_validate(
        {
            "dataset": {},
            "release": {
                "quasi_identifiers": {"iris": {}, "kva": {}},
                "sensitive": ["row"],
                "protection": {"k": k},
                "algorithm": "mondrian",
            },
        }
    )
    released = anonymize_microdata(data, policy, {"iris": GEO}, pseudonym_key=None).table
    assert len(released) == len(data)
    for level in GEO.levels:
        ladder = GEO.generalize_labels(IRIS, "iris", level)
        data[level] = data["iris"].map(ladder)
    labels = released.set_index("row")["iris"]
    for original, label in zip(data.itertuples(), labels[data["row"]], strict=True):
        assert label in {*(getattr(original, level) for level in GEO.levels), "*"}
    for _, group in released.groupby(["iris", "kva"]):
        assert len(group) >= k


# Three branches: two runs of leaves, each across a branch boundary, share the label `*`.
BRANCHES = TableHierarchy("branches", [[f"{g}{i}", g, "*"] for g in "pqr" for i in (1, 2)])


@SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from([f"{g}{i}" for g in "pqr" for i in (1, 2)]), st.integers(0, 3)),
        min_size=4,
        max_size=40,
    ),
    st.integers(2, 4),
)
def test_mondrian_manifest_describes_the_classes_as_released(drawn, k):
    # Mondrian partitions {p1, q1} and {q2, r1} are both released as `*`: one class of the
    # file, which the manifest counted as two, and whose risk it took from each half.
    data = pd.DataFrame(drawn, columns=["x", "n"]).astype(str)
    policy = MicrodataPolicy.model_validate(
        {
            "release": {
                "quasi_identifiers": {"x": {}, "n": {}},
                "protection": {"k": k},
                "algorithm": "mondrian",
            }
        }
    )
    try:
        result = anonymize_microdata(data, policy, {"x": BRANCHES}, pseudonym_key=None)
    except PolicyViolation:
        return
    sizes = result.table.groupby(["x", "n"]).size()
    assert result.manifest["classes"] == len(sizes)
    assert result.manifest["risk"]["prosecutor_highest"] == round(1 / sizes.min(), 6)
    assert result.manifest["risk"]["prosecutor_average"] == round(len(sizes) / len(data), 6)
