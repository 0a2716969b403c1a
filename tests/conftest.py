"""Fixtures shared by every test package."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

# Servers in zones on either side of Paris: a time read in the machine's zone moves across
# midnight, and so across a day, a month and a year, in both.
MACHINE_ZONES = ["America/New_York", "Asia/Tokyo"]


@pytest.fixture(params=MACHINE_ZONES)
def machine_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The machine's time zone (``TZ``) for the test, as a server elsewhere would have it."""
    zone: str = request.param
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    yield zone
    monkeypatch.undo()
    time.tzset()
