"""``partage audit`` on files it cannot trust: any manifest or table, however malformed, ends in
a verdict (exit 0) or one message naming the field or the cell (exit 2), never a crash; a table
that shows what it says is suppressed fails; a release that does not publish ``subjects`` is
audited on its sums."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from service.cli import app
from tests.factories import EXAMPLES, payments
from tests.service.test_cli_release import release

runner = CliRunner()

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a release with totals (out.csv) and its manifest."""
    workdir = tmp_path_factory.mktemp("audit-inputs")
    shutil.copytree(EXAMPLES, workdir, dirs_exist_ok=True)
    payments().to_csv(workdir / "payments.csv", index=False)
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    return workdir


def audit(table: Path, manifest: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", str(table), "--manifest", str(manifest), "--quiet"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path into a JSON document (lists: their first two items)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from paths(item, (*prefix, index))


def test_the_release_audits(released: Path) -> None:
    code, output = audit(released / "out.csv", released / "manifest.json")
    assert code == 0 and "audit passed" in output, output


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_damaged_manifest_gets_a_verdict_or_an_error_naming_the_field(
    released: Path, data: st.DataObject
) -> None:
    manifest = json.loads((released / "manifest.json").read_text())
    everywhere = [path for path in paths(manifest) if path and path[0] != "output"]
    path = data.draw(st.sampled_from(everywhere))
    damaged = copy.deepcopy(manifest)
    parent = damaged
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    target = released / "damaged.json"
    target.write_text(json.dumps(damaged))
    code, output = audit(released / "out.csv", target)
    assert code in (0, 2), output
    if code == 2:
        assert "[manifest." in output or "cell (" in output or "[table]" in output, output


def forged(released: Path, table: pd.DataFrame) -> tuple[Path, Path]:
    """``table`` written as a release with the original manifest (its hash updated)."""
    data = table.to_csv(index=False).encode()
    (released / "forged.csv").write_bytes(data)
    manifest = json.loads((released / "manifest.json").read_text())
    manifest["output"] = {"format": "csv", "sha256": hashlib.sha256(data).hexdigest()}
    (released / "forged.json").write_text(json.dumps(manifest))
    return released / "forged.csv", released / "forged.json"


def published(released: Path) -> pd.DataFrame:
    return pd.read_csv(released / "out.csv", dtype=str, keep_default_na=False)


def test_a_suppressed_cell_that_shows_a_value_fails(released: Path) -> None:
    table = published(released)
    row = table.index[table["status"] == "suppressed"][0]
    table.loc[row, "subjects"] = "3"
    code, output = audit(*forged(released, table))
    assert code == 2 and "shows its subjects" in output, output
    assert "departement=" + str(table.at[row, "departement"]) in output


def test_a_reason_other_than_the_manifests_fails(released: Path) -> None:
    table = published(released)
    row = table.index[table["reason"] == "k"][0]
    table.loc[row, "reason"] = "secondary"  # its requirement would then go unchecked
    code, output = audit(*forged(released, table))
    assert code == 2 and "the table gives the reason 'secondary', the manifest 'k'" in output


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("subjects", "many", "[subjects]: 'many' is not a finite number"),
        ("amount_sum", "1e999", "[amount_sum]: '1e999' is not a finite number"),
        ("status", "hidden", "[status]: status must be released or suppressed, not 'hidden'"),
    ],
)
def test_a_value_that_is_not_a_number_or_a_status_is_named(
    released: Path, column: str, value: str, message: str
) -> None:
    table = published(released)
    row = table.index[table["status"] == "released"][0]
    table.loc[row, column] = value
    code, output = audit(*forged(released, table))
    assert code == 2 and message in output, output


def test_a_cell_listed_twice_fails(released: Path) -> None:
    table = published(released)
    code, output = audit(*forged(released, pd.concat([table, table.iloc[[0]]])))
    assert code == 2 and "[table]: the table lists the cell" in output and "twice" in output


def test_a_release_without_subjects_is_audited_on_its_sums(released: Path) -> None:
    (released / "sums.yaml").write_text(
        (released / "payments-request.yaml").read_text().replace(", subjects]", "]")
    )
    assert "subjects" not in (released / "sums.yaml").read_text()
    code, output = release(
        released, "--manifest", str(released / "sums.json"), request="sums.yaml", out="sums.csv"
    )
    assert code == 0, output
    assert "subjects" not in pd.read_csv(released / "sums.csv").columns
    code, output = audit(released / "sums.csv", released / "sums.json")
    assert code == 0, output
    assert "subjects are not published: only the sums audited" in output
    table = pd.read_csv(released / "sums.csv", dtype=str, keep_default_na=False)
    secondary = table.index[table["reason"] == "secondary"]
    assert len(secondary), "the request's totals call for complements"
    table.loc[secondary, ["status", "reason"]] = ["released", ""]
    table.loc[secondary, "amount_sum"] = "0"
    data = table.to_csv(index=False).encode()
    (released / "sums.csv").write_bytes(data)
    manifest = json.loads((released / "sums.json").read_text())
    manifest["output"]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["audit"]["cells"] = [
        cell for cell in manifest["audit"]["cells"] if cell["reason"] != "secondary"
    ]
    (released / "sums.json").write_text(json.dumps(manifest))
    code, output = audit(released / "sums.csv", released / "sums.json")
    assert code == 2 and "amount_sum" in output, output
