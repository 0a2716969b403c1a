"""Microdata releases joined by pseudonym: whatever the partner holds under one pseudonym key,
its join with a new release has no released joint class below k (nor failing l-diversity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anonymization.errors import PolicyViolation
from anonymization.microdata import anonymize_microdata
from anonymization.microdata.config import MicrodataPolicy
from anonymization.microdata.linkage import HeldMicrodata, link_scope
from tests.anonymization import microdata_factories as factories
from tests.anonymization.microdata_factories import HIERARCHIES, QUASI_IDENTIFIERS, rows, table

KEY = b"k" * 32
ABSENT = "(not released)"

qi_subsets = st.lists(st.sampled_from(QUASI_IDENTIFIERS), min_size=1, max_size=3, unique=True)
protections = st.fixed_dictionaries(
    {"k": st.integers(2, 4), "suppression_limit": st.sampled_from([0.0, 0.1, 0.3, 0.6])},
    optional={"l": st.just({"kind": "distinct", "l": 2})},
)


def policy(qis: list[str], protection: dict[str, object], algorithm: str) -> MicrodataPolicy:
    """A policy over some quasi-identifiers with ``meter`` as the subject."""
    return factories.policy(protection, "loss", algorithm, qis, subject="meter")


def held(result_classes: dict[str, int] | None, k: int, name: str) -> HeldMicrodata:
    assert result_classes is not None
    return HeldMicrodata("data", link_scope(KEY), k, result_classes, name)


def joined(new: pd.DataFrame, old: pd.DataFrame, new_qis: list[str], old_qis: list[str]):
    """The partner's join: each record of the new release with its class in the held one."""
    renamed = old[["meter", *old_qis]].rename(columns={q: f"held {q}" for q in old_qis})
    frame = new.merge(renamed, on="meter", how="left").fillna(ABSENT)
    return frame.groupby([*new_qis, *(f"held {q}" for q in old_qis)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=rows,
    first=st.tuples(qi_subsets, protections, st.sampled_from(["optimal", "mondrian"])),
    second=st.tuples(qi_subsets, protections, st.sampled_from(["optimal", "mondrian"])),
)
def test_no_joint_class_below_k_whatever_two_releases(drawn, first, second) -> None:
    data = table(drawn)
    policies = [policy(*first), policy(*second)]
    try:
        one = anonymize_microdata(data, policies[0], HIERARCHIES, KEY, [])
    except PolicyViolation:
        assume(False)
    k1, k2 = (p.release.protection.k for p in policies)
    try:
        two = anonymize_microdata(data, policies[1], HIERARCHIES, KEY, [held(one.classes, k1, "1")])
    except PolicyViolation as refused:
        assert refused.code in {"no_solution", "linkable_with_held"}
        return
    groups = joined(two.table, one.table, list(second[0]), list(first[0]))
    if len(two.table):
        assert groups.size().min() >= max(k1, k2)
        if "l" in second[1]:
            assert groups["disease"].nunique().min() >= 2
    suppressed = two.manifest["records_suppressed"]
    assert suppressed <= policies[1].release.protection.suppressible(len(data))
    assert two.manifest["linkage"]["records_suppressed"] <= suppressed


def test_a_release_identical_to_a_held_one_passes_unchanged() -> None:
    data = table(
        [(a % 8, "abcd"[a % 4], str(a % 3), ["flu", "cold", "cancer"][a % 3]) for a in range(40)]
    )
    terms = policy(["age", "letter"], {"k": 3, "suppression_limit": 0.1}, "optimal")
    first = anonymize_microdata(data, terms, HIERARCHIES, KEY, [])
    again = anonymize_microdata(data, terms, HIERARCHIES, KEY, [held(first.classes, 3, "1")])
    assert again.manifest["linkage"] == {"held_releases": ["1"], "records_suppressed": 0}
    pd.testing.assert_frame_equal(again.table, first.table)


def test_a_release_no_node_protects_jointly_is_refused_naming_the_held_release() -> None:
    # Held: age only, 8 records per age. New: letter only, k=10, which 16 records per letter
    # allow alone; joined, even at letter `*` each age's 8 records stay a class below 10.
    data = table([(a % 8, "abcd"[(a // 8) % 4], "0", "flu") for a in range(64)])
    one = anonymize_microdata(data, policy(["age"], {"k": 2}, "optimal"), HIERARCHIES, KEY, [])
    alone = anonymize_microdata(data, policy(["letter"], {"k": 10}, "optimal"), HIERARCHIES, KEY)
    assert alone.manifest["records_suppressed"] == 0
    with pytest.raises(PolicyViolation) as refused:
        anonymize_microdata(
            data.sample(frac=1, random_state=1),
            policy(["letter"], {"k": 10}, "optimal"),
            HIERARCHIES,
            KEY,
            [held(one.classes, 2, "release 1 of the ledger")],
        )
    assert refused.value.code == "linkable_with_held"
    assert "release 1 of the ledger" in refused.value.detail


def test_the_search_moves_to_a_node_the_join_tells_less_at() -> None:
    # Held: age at value (8 per age). New: age and letter, k=8. Alone, letter at its value and
    # age at pairs pass (8 per class); joined with the held ages, each class splits in two.
    data = table([(a % 8, "abcd"[(a // 8) % 4], "0", "flu") for a in range(128)])
    one = anonymize_microdata(data, policy(["age"], {"k": 2}, "optimal"), HIERARCHIES, KEY, [])
    terms = policy(["age", "letter"], {"k": 8}, "optimal")
    alone = anonymize_microdata(data, terms, HIERARCHIES, KEY)
    joined = anonymize_microdata(data, terms, HIERARCHIES, KEY, [held(one.classes, 2, "1")])
    assert joined.manifest["records_suppressed"] == 0
    assert joined.manifest["node_levels"] != alone.manifest["node_levels"]
    groups = joined.table.merge(one.table[["meter", "age"]], on="meter", suffixes=("", " held"))
    assert groups.groupby(["age", "letter", "age held"]).size().min() >= 8


def outer_join(releases: list[tuple[pd.DataFrame, list[str]]]) -> pd.DataFrame:
    """The partner's join of everything held: each subject of any release with its released
    values in each one, or its absence from it."""
    frames = [
        frame[["meter", *qis]].rename(columns={q: f"{i} {q}" for q in qis})
        for i, (frame, qis) in enumerate(releases)
    ]
    joined_all = frames[0]
    for frame in frames[1:]:
        joined_all = joined_all.merge(frame, on="meter", how="outer")
    return joined_all.fillna(ABSENT)


def test_a_held_record_left_out_is_not_singled_out_by_its_absence() -> None:
    # Held: letter only, the 11 records one class. New: age alone would suppress the one
    # record of age 7, the only held pseudonym then missing: its cancer would be known.
    data = table(
        [(0, "a", "0", "flu")] * 5 + [(2, "a", "0", "cold")] * 5 + [(7, "a", "0", "cancer")]
    )
    one = anonymize_microdata(data, policy(["letter"], {"k": 5}, "optimal"), HIERARCHIES, KEY, [])
    terms = policy(["age"], {"k": 5, "suppression_limit": 0.1}, "optimal")
    try:
        two = anonymize_microdata(data, terms, HIERARCHIES, KEY, [held(one.classes, 5, "1")])
    except PolicyViolation as refused:
        assert refused.code == "linkable_with_held"
        return
    absent = outer_join([(one.table, ["letter"]), (two.table, ["age"])])
    assert absent.groupby(["0 letter", "1 age"]).size().min() >= 5


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=rows,
    terms=st.lists(
        st.tuples(qi_subsets, protections, st.sampled_from(["optimal", "mondrian"])),
        min_size=3,
        max_size=4,
    ),
)
def test_no_joint_class_below_k_whatever_the_releases_held_and_left_out(drawn, terms) -> None:
    data = table(drawn)
    releases: list[tuple[pd.DataFrame, list[str]]] = []
    holding: list[HeldMicrodata] = []
    for number, (qis, protection, algorithm) in enumerate(terms):
        try:
            made = anonymize_microdata(
                data, policy(qis, protection, algorithm), HIERARCHIES, KEY, list(holding)
            )
        except PolicyViolation as refused:
            assert refused.code in {"no_solution", "linkable_with_held"}
            continue
        releases.append((made.table, list(qis)))
        holding.append(held(made.classes, int(protection["k"]), str(number)))
    assume(len(releases) >= 2)
    everything = outer_join(releases)
    ks = [h.k for h in holding]
    present = pd.DataFrame(
        {i: everything[f"{i} {qis[0]}"] != ABSENT for i, (_, qis) in enumerate(releases)}
    )
    everything["k"] = present.apply(
        lambda row: max(k for k, p in zip(ks, row, strict=True) if p), axis=1
    )
    columns = [f"{i} {q}" for i, (_, qis) in enumerate(releases) for q in qis]
    groups = everything.groupby(columns)
    small = groups.size() < groups["k"].max()
    assert not small.any(), groups.size()[small]


def entropy_l(values: pd.Series) -> float:
    """The entropy l of a class's sensitive values: exp of their entropy."""
    shares = values.value_counts(normalize=True).to_numpy()
    return float(np.exp(-(shares * np.log(shares)).sum()))


def equal_distance(values: pd.Series, overall: pd.Series) -> float:
    """t-closeness's equal distance: half the L1 distance to the whole input's distribution."""
    here = values.value_counts(normalize=True)
    return float(0.5 * here.sub(overall, fill_value=0.0).abs().sum())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=rows,
    first=st.tuples(qi_subsets, factories.protections, st.sampled_from(["optimal", "mondrian"])),
    l_or_t=st.sampled_from(
        [{"l": {"kind": "entropy", "l": 2}}, {"t": {"max": 0.4, "distance": "equal"}}]
    ),
    second_qis=qi_subsets,
    k=st.integers(2, 3),
)
def test_joint_classes_keep_entropy_l_and_t_closeness(drawn, first, l_or_t, second_qis, k) -> None:
    data = table(drawn)
    try:
        one = anonymize_microdata(data, policy(*first), HIERARCHIES, KEY, [])
    except PolicyViolation:
        assume(False)
    terms = policy(second_qis, {"k": k, "suppression_limit": 0.3, **l_or_t}, "optimal")
    held_one = held(one.classes, int(first[1]["k"]), "1")
    try:
        two = anonymize_microdata(data, terms, HIERARCHIES, KEY, [held_one])
    except PolicyViolation as refused:
        assert refused.code in {"no_solution", "linkable_with_held"}
        return
    assume(len(two.table))
    overall = data["disease"].value_counts(normalize=True)
    for _, members in joined(two.table, one.table, second_qis, list(first[0])):
        if "l" in l_or_t:
            assert entropy_l(members["disease"]) >= 2 - 1e-9
        else:
            assert equal_distance(members["disease"], overall) <= 0.4 + 1e-9
