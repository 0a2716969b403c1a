"""Released tables checked by an independent implementation: pycanon (in its own venv)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anonymization.microdata.config import MicrodataPolicy
from anonymization.microdata.release import anonymize_microdata, load_hierarchies
from tests.factories import ADULT

ROOT = Path(__file__).resolve().parents[2]
PYCANON = ROOT / ".venv-pycanon" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not PYCANON.exists(), reason="the pycanon venv is absent: `make test` creates it"
)


def _pycanon(
    released: pd.DataFrame, quasi_identifiers: list[str], sensitive: str, tmp_path: Path
) -> dict[str, float]:
    path = tmp_path / "released.csv"
    released.to_csv(path, index=False)
    script = Path(__file__).with_name("pycanon_check.py")
    output = subprocess.run(
        [str(PYCANON), str(script), str(path), ",".join(quasi_identifiers), sensitive],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(output.stdout)


def _assert_agree(result, quasi_identifiers, sensitive, tmp_path, k, l_min, t_max=None):
    theirs = _pycanon(result.table, quasi_identifiers, sensitive, tmp_path)
    ours = result.manifest["measured"]
    assert theirs["k"] == ours["k"] >= k
    assert theirs["l"] == ours["l_distinct"] >= l_min
    assert theirs["entropy_l"] == math.floor(ours["l_entropy"] + 1e-9)
    assert theirs["t"] == pytest.approx(ours["t"], abs=1e-6)
    if t_max is not None:
        assert theirs["t"] <= t_max + 1e-9


@pytest.mark.skipif(not ADULT.exists(), reason="the Adult data is not on this machine")
def test_adult_release_checked_by_pycanon(tmp_path):
    policy_path = ROOT / "examples" / "adult-microdata.yaml"
    import yaml

    document = yaml.safe_load(policy_path.read_text())
    document["release"]["protection"] = {
        "k": 5,
        "suppression_limit": 0.0,
        "l": {"kind": "distinct", "l": 2},
        "t": {"max": 0.35, "distance": "equal"},
    }
    policy = MicrodataPolicy.model_validate(document)
    data = pd.read_csv(ADULT, sep=";", dtype=str, keep_default_na=False)
    result = anonymize_microdata(data, policy, load_hierarchies(policy, policy_path.parent), None)
    qis = list(policy.release.quasi_identifiers)
    _assert_agree(result, qis, "salary-class", tmp_path, k=5, l_min=2, t_max=0.35)


def test_mondrian_on_numeric_consumption_checked_by_pycanon(tmp_path):
    rng = np.random.default_rng(7)
    size = 3000
    data = pd.DataFrame(
        {
            "meter": [f"M{i}" for i in range(size)],
            "surface": rng.integers(15, 200, size).astype(str),
            "occupants": rng.integers(1, 7, size).astype(str),
            "kwh": (rng.gamma(2.0, 2000.0, size) // 100 * 100).astype(int).astype(str),
            "tariff": rng.choice(["base", "peak", "tempo"], size),
        }
    )
    policy = MicrodataPolicy.model_validate(
        {
            "dataset": {"identifiers": ["meter"]},
            "release": {
                "quasi_identifiers": {"surface": {}, "occupants": {}, "kwh": {}},
                "sensitive": ["tariff"],
                "algorithm": "mondrian",
                "protection": {"k": 10, "l": {"kind": "entropy", "l": 2}},
            },
        }
    )
    result = anonymize_microdata(data, policy, {}, None)
    _assert_agree(result, ["surface", "occupants", "kwh"], "tariff", tmp_path, k=10, l_min=2)
