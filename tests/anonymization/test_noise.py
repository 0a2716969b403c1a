"""Consistent noise (the cell key method): the perturbation table, the cell keys, and what a
partner holding noisy releases can and cannot do with them."""

from __future__ import annotations

import hmac
import io
import json
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from anonymization.errors import InvalidRequest
from anonymization.hierarchies import CategoricalHierarchy, builtin
from anonymization.ledger import SQLiteLedger
from anonymization.manifest import read_manifest
from anonymization.noise import CellKeyNoise
from anonymization.plan import AggregatePlan, Dimension, Filter, Measure
from anonymization.protection import Protection, primary_suppression
from anonymization.ptable import perturbation_table
from anonymization.reaudit import reaudit
from anonymization.release import Release, run_release
from policies.files import parse, read_document
from policies.models import Policy
from tests.anonymization.reference_audit import reference_intervals
from tests.anonymization.test_attacks import meters
from tests.anonymization.test_secondary_properties import tables
from tests.factories import EXAMPLES, payments

NOISE = CellKeyNoise(max=2, variance=1.0)
SECRET = b"the dataset's noise secret, 32 b"
OTHER = b"another dataset's secret, 32 byt"
PROPERTIES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(top: int, variance: float):  # type: ignore[no-untyped-def]
    """A table built afresh (not the cached one)."""
    return perturbation_table.__wrapped__(top, variance)


@pytest.mark.parametrize(
    ("top", "variance"), [(1, 0.5), (2, 1.0), (2, 3.9), (3, 2.5), (5, 20.0), (5, 0.3)]
)
def test_each_row_has_zero_mean_the_variance_and_no_negative_count(
    top: int, variance: float
) -> None:
    table = build(top, variance)
    noise = table.noise
    assert list(noise) == list(range(-top, top + 1))
    for count in range(top + 4):
        p = table.row(count)
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-10
        assert abs(p @ noise) < 1e-9
        assert (p[count + noise < 0] == 0).all(), "a count would go negative"
        if count == 0:
            assert p[top] == 1.0
        elif min(count, top) * top > variance:
            assert abs(p @ noise**2 - variance) < 1e-9
        else:
            # Out of reach (count * max <= variance): lower variance, as documented.
            assert p @ noise**2 < variance
    assert (table.row(top) == table.row(top + 100)).all()


def test_the_table_is_deterministic_and_its_digest_names_its_parameters() -> None:
    first, second = build(3, 2.5), build(3, 2.5)
    assert (first.probabilities == second.probabilities).all()
    assert first.digest() == second.digest()
    assert first.digest() != build(3, 2.0).digest() != build(2, 2.0).digest()


def test_the_cell_key_draws_each_noise_with_its_probability() -> None:
    table = build(2, 1.0)
    size = 200_000
    keys = (np.arange(size) + 0.5) / size
    for count in (1, 2, 7):
        drawn = table.lookup(np.full(size, count), keys)
        frequency = np.array([(drawn == v).mean() for v in table.noise])
        assert np.abs(frequency - table.row(count)).max() <= 2 / size


def policy_with(noise: object) -> dict[str, object]:
    document = read_document(EXAMPLES / "payments-policy.yaml")
    document["release"]["protection"]["noise"] = noise
    return document


@pytest.mark.parametrize(
    ("noise", "field"),
    [
        ({"method": "cell_key", "max": 2, "variance": 4}, "release.protection.noise.variance"),
        ({"method": "cell_key", "max": 2, "variance": 0}, "release.protection.noise.variance"),
        ({"method": "cell_key", "max": 0, "variance": 1}, "release.protection.noise.max"),
        ({"method": "cell_key", "max": 1.5, "variance": 1}, "release.protection.noise.max"),
        ({"method": "gaussian", "max": 2, "variance": 1}, "release.protection.noise.method"),
    ],
)
def test_noise_parameters_are_validated(noise: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(Policy, policy_with(noise))
    assert raised.value.field == field


def test_a_policy_with_noise_parses() -> None:
    policy = parse(Policy, policy_with({"method": "cell_key", "max": 2, "variance": 1}))
    assert policy.release.protection.resolve().noise == NOISE


def grid_plan(
    dims: Sequence[str],
    k: int,
    totals: bool,
    filters: tuple[Filter, ...] = (),
    noise: CellKeyNoise | None = NOISE,
) -> AggregatePlan:
    return AggregatePlan(
        subject="subject",
        dimensions=tuple(Dimension(d, CategoricalHierarchy(d), "value", "value") for d in dims),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=Protection(k=k, noise=noise),
        filters=filters,
        totals=totals,
    )


def expected_cell_keys(table: pd.DataFrame, dims: list[str]) -> dict[tuple[str, ...], int]:
    """Cell keys written from the method's definition: the sum of the HMAC record keys of every
    distinct subject in the cell (margins too), modulo 2^64."""
    derived = hmac.digest(SECRET, b"partage/cell-key/v1", "sha256")

    def key(subject: str) -> int:
        return int.from_bytes(hmac.digest(derived, subject.encode(), "sha256")[:8], "big")

    out = {}
    for size in range(len(dims) + 1):
        for kept in combinations(dims, size):
            groups = table.groupby(list(kept)) if kept else [((), table)]
            for labels, rows in groups:
                labels = labels if isinstance(labels, tuple) else (labels,)
                full = tuple(str(labels[kept.index(d)]) if d in kept else "*" for d in dims)
                out[full] = sum(key(s) for s in set(rows["subject"])) % 2**64
    return out


@PROPERTIES
@given(
    table=tables(),
    k=st.integers(2, 5),
    dims=st.sampled_from([["a", "b"], ["b", "c"], ["a", "b", "c"]]),
)
def test_noisy_counts_are_bounded_never_negative_and_decided_on_true_values(
    table: pd.DataFrame, k: int, dims: list[str]
) -> None:
    release = run_release(table, grid_plan(dims, k, totals=True), noise_secret=SECRET)
    truth = release.cells.reset_index(drop=True)
    published = release.table
    keys = expected_cell_keys(table, dims)
    assert truth["cell_key"].dtype == np.uint64
    assert [keys[tuple(row)] for row in truth[dims].itertuples(index=False)] == [
        int(v) for v in truth["cell_key"]
    ]
    released = (published["status"] == "released").to_numpy()
    shown = published.loc[released, "subjects"].to_numpy(dtype=float)
    true = truth.loc[released, "subjects"].to_numpy(dtype=float)
    assert (shown >= 0).all()
    assert (np.abs(shown - true) <= NOISE.max).all()
    assert (true >= k).all(), "a cell below k was released"
    primary = primary_suppression(truth, release.plan.protection).to_numpy()
    reasons = published["reason"].to_numpy(dtype=object)
    assert all(reasons[i] == primary[i] for i in range(len(truth)) if primary[i] is not None)
    fractions = truth["cell_key"].to_numpy(dtype=np.uint64) >> np.uint64(11)
    noise = NOISE.table().lookup(true, fractions[released].astype(float) * 2.0**-53)
    assert (shown - true == noise).all()
    assert_audited(release, table, dims, k)


def assert_audited(release: Release, table: pd.DataFrame, dims: list[str], k: int) -> None:
    """The manifest's audit is what an attacker's own LP finds when every published count is
    known only within ±max, protected cells are at least k wide, and the re-audit passes."""
    manifest = json.loads(json.dumps(release.summary()))
    assert manifest["audit"]["published_error"] == {"subjects": float(NOISE.max)}
    published = release.table
    additive = {d for d in dims if table.groupby("subject")[d].nunique().max() == 1}
    found = reference_intervals(published, dims, "subjects", additive, True, error=NOISE.max)
    for entry, (row, (low, high)) in zip(
        manifest["audit"]["cells"], sorted(found.items()), strict=True
    ):
        assert np.isclose(entry["subjects"]["lower"], low, atol=1e-4)
        assert (entry["subjects"]["upper"] is None) == np.isinf(high)
        if np.isfinite(high):
            assert np.isclose(entry["subjects"]["upper"], high, atol=1e-4)
        if published["reason"].iloc[row] != "secondary":
            assert high - low >= k - 1e-6
    reaudit(published, manifest)


def filtered(values: tuple[str, ...]) -> tuple[Filter, ...]:
    return (Filter("b", CategoricalHierarchy("b"), "value", "value", values),)


@PROPERTIES
@given(table=tables(), k=st.integers(2, 4))
def test_the_same_cell_gets_the_same_noise_in_every_request(table: pd.DataFrame, k: int) -> None:
    """Averaging attack: overlapping requests that all contain the cells ``b = b0`` publish them
    identically, so the mean of N answers is the single answer, never closer to the truth."""
    answers: dict[str, list[float]] = {}
    truths: dict[str, float] = {}
    requests = [("b0", "b1"), ("b0", "b2"), ("b0",), ("b0", "b1", "b2"), ("b0", "b1")]
    for values in requests:
        release = run_release(
            table, grid_plan(["a", "b"], k, False, filtered(values)), noise_secret=SECRET
        )
        out, cells = release.table, release.cells.reset_index(drop=True)
        mine = (out["b"] == "b0") & (out["status"] == "released")
        for row in np.flatnonzero(mine.to_numpy()):
            answers.setdefault(out["a"].iloc[row], []).append(float(out["subjects"].iloc[row]))
            truths[out["a"].iloc[row]] = float(cells["subjects"].iloc[row])
    for label, values in answers.items():
        assert len(values) == len(requests) and len(set(values)) == 1
        mean = float(np.mean(values))
        assert mean == values[0]
        assert (mean == truths[label]) == (values[0] - truths[label] == 0)


@PROPERTIES
@given(table=tables(), k=st.integers(2, 4))
def test_margins_are_cells_of_their_own_and_grid_cells_keep_their_noise(
    table: pd.DataFrame, k: int
) -> None:
    flat = run_release(table, grid_plan(["a", "b"], k, False), noise_secret=SECRET).table
    with_totals = run_release(table, grid_plan(["a", "b"], k, True), noise_secret=SECRET).table
    merged = flat.merge(with_totals, on=["a", "b"], suffixes=("", "_t"))
    both = (merged["status"] == "released") & (merged["status_t"] == "released")
    assert (merged.loc[both, "subjects"] == merged.loc[both, "subjects_t"]).all()


@st.composite
def one_row_per_subject(draw: st.DrawFn) -> pd.DataFrame:
    """One row per subject, as the demo's annual consumption profile: every count of values of
    ``x`` is a count of subjects, unless some values are empty."""
    size = draw(st.integers(min_value=1, max_value=60))
    empty = draw(st.booleans())
    return pd.DataFrame(
        {
            "subject": [f"s{i}" for i in range(size)],
            "a": [draw(st.sampled_from(["a0", "a1", "a2"])) for _ in range(size)],
            "b": [draw(st.sampled_from(["b0", "b1"])) for _ in range(size)],
            "x": [
                None if empty and draw(st.integers(0, 4)) == 0 else float(draw(st.integers(1, 500)))
                for _ in range(size)
            ],
        }
    )


@PROPERTIES
@given(
    table=one_row_per_subject(),
    k=st.integers(2, 4),
    totals=st.booleans(),
    with_sum=st.booleans(),
)
def test_counts_and_means_give_no_more_than_the_noisy_subjects(
    table: pd.DataFrame, k: int, totals: bool, with_sum: bool
) -> None:
    """On one row per subject, ``x_count`` is the subjects count and sum / mean gives a count:
    published exact, either undid the noise. Each is now the published subjects count itself
    (same key, same table, same noise), so they add no second reading of the true count; the
    audit from the files alone still passes, sums read as mean × count where not published."""
    sums = (Measure("x", "sum"),) if with_sum else ()
    plan = replace(
        grid_plan(["a", "b"], k, totals),
        measures=(*sums, Measure("x", "mean"), Measure("x", "count"), Measure(None, "subjects")),
    )
    release = run_release(table, plan, noise_secret=SECRET)
    published, truth = release.table, release.cells.reset_index(drop=True)
    released = (published["status"] == "released").to_numpy()
    subjects = published["subjects"].to_numpy(dtype=float)
    count = published["x_count"].to_numpy(dtype=float)
    assert (count[released] >= 0).all()
    same = released & (truth["x_n"].to_numpy() == truth["subjects"].to_numpy())
    assert (count[same] == subjects[same]).all(), "x_count tells the true subjects count"
    mean = published["x_mean"].to_numpy(dtype=float)
    sum_ = truth["x_sum"].to_numpy(dtype=float)
    valued = released & ~np.isnan(sum_)
    # sum / mean: the published count (1 where noise brought it to 0), never the true one.
    recovered = sum_[valued] / mean[valued]
    assert np.allclose(recovered, np.maximum(count[valued], 1), rtol=1e-5)
    if with_sum:
        assert np.allclose(published["x_sum"].to_numpy(dtype=float)[valued], sum_[valued])
    manifest = json.loads(json.dumps(release.summary()))
    reaudit(published, manifest)


def payments_plan(noise: CellKeyNoise | None = NOISE, totals: bool = True) -> AggregatePlan:
    geo = builtin("geo_fr")
    assert geo is not None
    return AggregatePlan(
        subject="card_id",
        dimensions=(
            Dimension("departement", geo, "departement", "departement"),
            Dimension("card_country", CategoricalHierarchy("card_country"), "value", "value"),
        ),
        measures=(Measure("amount", "sum"), Measure(None, "subjects")),
        protection=Protection(k=10, noise=noise),
        totals=totals,
    )


def test_different_secrets_give_different_noise() -> None:
    data = payments()
    mine = run_release(data, payments_plan(), noise_secret=SECRET)
    theirs = run_release(data, payments_plan(), noise_secret=OTHER)
    assert (mine.cells["subjects"] == theirs.cells["subjects"]).all()
    assert (mine.cells["cell_key"] != theirs.cells["cell_key"]).all()
    released = (mine.table["status"] == "released") & (theirs.table["status"] == "released")
    differ = mine.table.loc[released, "subjects"] != theirs.table.loc[released, "subjects"]
    assert differ.sum() >= 5
    noise = mine.table.loc[released, "subjects"] - mine.cells.loc[released, "subjects"]
    assert (noise != 0).sum() >= 5, "the noise does something"


def test_noise_needs_the_secret_and_a_release_without_noise_has_no_cell_keys() -> None:
    with pytest.raises(InvalidRequest) as raised:
        run_release(payments(), payments_plan())
    assert raised.value.field == "noise_secret"
    plain = run_release(payments(), payments_plan(noise=None), noise_secret=SECRET)
    assert "cell_key" not in plain.cells.columns
    assert "noise" not in plain.summary() and "published_error" not in plain.summary()["audit"]
    released = plain.table["status"] == "released"
    assert (plain.table.loc[released, "subjects"] == plain.cells.loc[released, "subjects"]).all()


def test_the_manifest_names_the_noise_but_never_the_secret() -> None:
    release = run_release(payments(), payments_plan(), noise_secret=SECRET)
    summary = release.summary()
    assert summary["noise"] == {
        "method": "cell_key",
        "max": 2,
        "variance": 1.0,
        "ptable_sha256": NOISE.table().digest(),
        "perturbed": ["subjects", "<measure>_count"],
        "means": "<measure>_sum over the published <measure>_count (over 1 where that is 0)",
        "totals": "perturbed as cells of their own (their own cell key)",
    }
    assert summary["plan"]["protection"]["noise"] == {
        "method": "cell_key",
        "max": 2,
        "variance": 1.0,
    }
    text = json.dumps(summary) + release.table.to_csv()
    for form in (SECRET.decode(), SECRET.hex(), hmac.digest(SECRET, b"", "sha256").hex()):
        assert form not in text


def meters_plan(level: str) -> AggregatePlan:
    geo = builtin("geo_fr")
    assert geo is not None
    return AggregatePlan(
        subject="meter",
        dimensions=(Dimension("commune", geo, "commune", level),),
        measures=(Measure("kwh", "sum"), Measure(None, "subjects")),
        protection=Protection(k=5, noise=NOISE),
    )


def test_held_noisy_releases_are_protected_with_their_published_values(tmp_path: Path) -> None:
    """A hierarchy level released twice, with noise: the held département count and the commune
    counts are each known within ±max; the small commune stays hidden, and the same communes
    requested again get the same published values."""
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    plans: list[AggregatePlan] = []

    def deliver(plan: AggregatePlan) -> Release:
        held = list(zip(ledger.held("partner", "meters"), plans, strict=True))
        release = run_release(meters(), plan, held=held, noise_secret=SECRET)
        ledger.record("partner", release.held("meters", {}))
        plans.append(plan)
        return release

    departements = deliver(meters_plan("departement"))
    stored = ledger.held("partner", "meters")[0].block
    assert (stored.errors["subjects"] == NOISE.max).all()
    assert (stored.values["subjects"] == departements.table["subjects"].to_numpy(float)).all()
    d06 = float(departements.table.set_index("commune").loc["06", "subjects"])
    communes = deliver(meters_plan("commune"))
    table = communes.table
    in06 = table[table["commune"].str.startswith("06")]
    hidden = in06.index[in06["status"] == "suppressed"].tolist()
    known = in06.loc[in06["status"] == "released", "subjects"].to_numpy(float)
    target = hidden.index(table.index[table["commune"] == "06029"][0])
    # sum(hidden) = true(d06) - sum(true known), each true value within ±max of its published one
    slack = NOISE.max * (1 + len(known))
    rows = [np.ones(len(hidden)), -np.ones(len(hidden))]
    rhs = [d06 - known.sum() + slack, -(d06 - known.sum() - slack)]
    found = []
    for sense in (1.0, -1.0):
        cost = np.zeros(len(hidden))
        cost[target] = sense
        result = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), method="highs")
        found.append(sense * result.fun)
    assert found[1] - found[0] >= 5
    # The audit from the files, the held ones included, finds the manifest's joint intervals.
    files = [(departements.table, read_manifest(json.loads(json.dumps(departements.summary()))))]
    manifest = json.loads(json.dumps(communes.summary()))
    geo = builtin("geo_fr")
    assert geo is not None
    checked = reaudit(table, manifest, held=files, hierarchies={"commune": geo})
    assert (checked.joined, checked.exact) == (1, True)
    again = deliver(meters_plan("commune"))
    assert (again.table["status"] == table["status"]).all()
    assert again.table["subjects"].equals(table["subjects"])


@st.composite
def noises(draw: st.DrawFn) -> CellKeyNoise:
    """Any noise the policy accepts: max 1 to 6, a variance between 0 and max²."""
    top = draw(st.integers(1, 6))
    share = draw(st.sampled_from([0.05, 0.3, 0.6, 0.95]))
    return CellKeyNoise(max=top, variance=share * top * top)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=tables(),
    k=st.integers(2, 4),
    noise=noises(),
    totals=st.booleans(),
    dims=st.sampled_from([["a", "b"], ["b", "c"], ["a"]]),
    measures=st.sampled_from(
        [
            (Measure("x", "mean"), Measure("x", "count")),
            (Measure("x", "sum"), Measure("x", "mean"), Measure("x", "count")),
            (Measure("x", "count"),),
            (
                Measure("x", "mean"),
                Measure("x", "count"),
                Measure("y", "mean"),
                Measure("y", "count"),
            ),
        ]
    ),
)
def test_the_file_audit_passes_for_every_noise_and_counted_measures(
    table: pd.DataFrame,
    k: int,
    noise: CellKeyNoise,
    totals: bool,
    dims: list[str],
    measures: tuple[Measure, ...],
) -> None:
    """Held: ``partage audit`` from the files (CSV and manifest as written) passes whatever the
    noise's parameters, with counts of rows (several per subject), means without sums, a second
    measure with empty values, and margins; counts are whole, never negative, within max."""
    table = table.assign(y=[v if v % 3 else None for v in table["x"]])
    plan = replace(
        grid_plan(dims, k, totals, noise=noise), measures=(*measures, Measure(None, "subjects"))
    )
    release = run_release(table, plan, noise_secret=SECRET)
    text = release.table.to_csv(index=False)
    published = pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(dims, str))
    reaudit(published, json.loads(json.dumps(release.summary())))
    truth = release.cells.reset_index(drop=True)
    released = (release.table["status"] == "released").to_numpy()
    for column in {m.column for m in measures}:
        count = release.table[f"{column}_count"].to_numpy(dtype=float)[released]
        true = truth[f"{column}_n"].to_numpy(dtype=float)[released]
        assert (count >= 0).all() and (count == np.round(count)).all()
        assert (np.abs(count - true) <= noise.max).all()
