"""Pseudonyms are keyed per agreement: unlinkable across partners, never a plain hash."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymization.errors import InvalidRequest
from anonymization.microdata.pseudonyms import agreement_key, pseudonymize

SECRET = b"s" * 16 + b"e" * 16


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True))
def test_two_agreements_give_unlinkable_pseudonyms(values):
    first = pseudonymize(values, agreement_key(SECRET, "agreement-a"))
    second = pseudonymize(values, agreement_key(SECRET, "agreement-b"))
    assert set(first).isdisjoint(second)
    assert first == pseudonymize(values, agreement_key(SECRET, "agreement-a"))
    assert len(set(first)) == len(values)


def test_pseudonym_is_not_a_plain_hash_of_the_value():
    meter = "12345678901234"
    pseudonym = pseudonymize([meter], agreement_key(SECRET, "a"))[0]
    plain = hashlib.sha256(meter.encode()).hexdigest()
    assert pseudonym not in plain
    assert pseudonym != hashlib.sha256((meter + "a").encode()).hexdigest()[:32]


def test_brute_force_of_a_meter_number_needs_the_key():
    """An attacker enumerating meter numbers with SHA-256 finds no pseudonym."""
    pseudonyms = set(pseudonymize([f"{n:04d}" for n in range(1000)], agreement_key(SECRET, "a")))
    guesses = {hashlib.sha256(f"{n:04d}".encode()).hexdigest()[:32] for n in range(10000)}
    assert pseudonyms.isdisjoint(guesses)


@pytest.mark.parametrize(("secret", "agreement"), [(b"short", "a"), (SECRET, "")])
def test_weak_key_or_missing_agreement_is_refused(secret, agreement):
    with pytest.raises(InvalidRequest):
        agreement_key(secret, agreement)


def test_unkeyed_pseudonymization_is_refused():
    with pytest.raises(InvalidRequest):
        pseudonymize(["x"], b"")
