from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from anonymization.errors import InvalidRequest
from anonymization.protection import (
    DominanceRule,
    PPercentRule,
    Protection,
    ProtectionSpec,
    ThresholdRule,
    primary_suppression,
)


def cells(*rows: tuple[int, float, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subjects": [r[0] for r in rows],
            "x_sum": [r[1] for r in rows],
            "x_top": [r[2] for r in rows],
        }
    )


def test_threshold_counts_subjects() -> None:
    mask = ThresholdRule(k=3).sensitive(cells((2, 10, [5]), (3, 10, [4]), (10, 1, [1])))
    assert mask.tolist() == [True, False, False]


def test_dominance_uses_each_subjects_total() -> None:
    rule = DominanceRule(n=1, percent=85, measure="x")
    table = cells((5, 100, [86, 5]), (5, 100, [85, 5]), (5, 0, [0]), (5, -10, [1]))
    assert rule.sensitive(table).tolist() == [True, False, False, True]
    assert DominanceRule(n=2, percent=90, measure="x").sensitive(
        cells((5, 100, [50, 41]))
    ).tolist() == [True]


def test_p_percent_rule_as_in_tau_argus() -> None:
    rule = PPercentRule(p=10, measure="x")
    # total - x1 - x2 < p% of x1: the second largest can estimate the largest too well.
    table = cells((3, 100, [80, 11, 9]), (3, 100, [80, 13, 7]), (1, 50, [50]))
    assert rule.sensitive(table).tolist() == [False, True, True]


def test_primary_suppression_reports_the_first_failing_rule() -> None:
    protection = Protection(k=3, dominance=DominanceRule(percent=85, measure="x"))
    reasons = primary_suppression(cells((2, 100, [99]), (5, 100, [99]), (5, 100, [20])), protection)
    assert reasons.tolist() == ["k", "dominance", None]


def test_rules_validate_their_parameters() -> None:
    with pytest.raises(ValidationError):
        ThresholdRule(k=1)
    with pytest.raises(ValidationError):
        DominanceRule(percent=120)
    with pytest.raises(ValidationError):
        ProtectionSpec()


def test_presets_by_name_and_declared_ones() -> None:
    insee = ProtectionSpec(preset="insee").resolve()
    assert insee.k == 3 and insee.dominance is not None and insee.dominance.percent == 85
    mine = Protection(k=11)
    assert ProtectionSpec(preset="bank", k=12).resolve({"bank": mine}).k == 12
    with pytest.raises(InvalidRequest, match="unknown preset"):
        ProtectionSpec(preset="nope").resolve()


def test_a_measure_rule_without_a_summed_measure_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="summed measure"):
        Protection(k=3, dominance=DominanceRule(percent=85)).with_measure(None)
