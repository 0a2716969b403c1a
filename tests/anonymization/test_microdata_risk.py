"""Risk report: prosecutor risk from class sizes, population estimates from sampling."""

from __future__ import annotations

import numpy as np
import pytest

from anonymization.microdata.risk import risk_report


def test_prosecutor_risk_of_known_classes():
    report = risk_report(np.array([2.0, 5.0, 10.0]), threshold=0.3, population=None)
    assert report["prosecutor_highest"] == pytest.approx(0.5)
    assert report["prosecutor_average"] == pytest.approx(3 / 17, abs=1e-6)
    assert report["records_at_risk"] == pytest.approx(2 / 17, abs=1e-6)
    assert report["journalist_highest"] is None


def test_population_lowers_journalist_and_marketer_risk():
    report = risk_report(np.array([5.0, 5.0]), threshold=0.5, population=100)
    assert report["journalist_highest"] == pytest.approx(0.02)
    assert report["marketer"] == pytest.approx(0.02)
    assert report["records_at_risk"] == 0.0
