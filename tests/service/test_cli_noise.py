"""``partage release`` with consistent noise: the secret file, the audit of a noisy release, and
what the files never contain."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.service.test_cli_audit import audit
from tests.service.test_cli_release import release, workdir

__all__ = ["workdir"]
SECRET = "0f4c2a9e7b1d3c5a8e6f0b2d4a6c8e1f"


@pytest.fixture
def noisy(workdir: Path) -> Path:
    policy = yaml.safe_load((workdir / "payments-policy.yaml").read_text())
    policy["release"]["protection"]["noise"] = {"method": "cell_key", "max": 2, "variance": 1}
    (workdir / "payments-policy.yaml").write_text(yaml.safe_dump(policy))
    (workdir / "noise.key").write_text(SECRET + "\n")
    return workdir


@pytest.mark.parametrize("secret", [None, "missing.key", "empty.key", "short.key"])
def test_a_noisy_policy_needs_a_readable_secret_file(noisy: Path, secret: str | None) -> None:
    (noisy / "empty.key").write_text("\n")
    (noisy / "short.key").write_text("abc")
    extra = [] if secret is None else ["--noise-secret-file", str(noisy / secret)]
    code, output = release(noisy, *extra)
    assert code == 2
    assert "--noise-secret-file" in output
    assert not (noisy / "out.csv").exists()


def test_a_noisy_release_passes_its_audit_and_never_shows_the_secret(noisy: Path) -> None:
    manifest = noisy / "manifest.json"
    code, output = release(
        noisy, "--manifest", str(manifest), "--noise-secret-file", str(noisy / "noise.key")
    )
    assert code == 0, output
    document = json.loads(manifest.read_text())
    assert document["noise"]["max"] == 2 and document["noise"]["ptable_sha256"].startswith(
        "sha256:"
    )
    assert document["audit"]["published_error"] == {"subjects": 2.0}
    for content in ((noisy / "out.csv").read_text(), manifest.read_text()):
        assert SECRET not in content and SECRET.encode().hex() not in content
    code, output = audit(noisy)
    assert code == 0, output
    assert "audit passed" in output


def test_two_requests_publish_a_shared_cell_identically(noisy: Path) -> None:
    request = yaml.safe_load((noisy / "payments-request.yaml").read_text())
    request["totals"] = False
    tables = []
    for countries in (["DE", "GB"], ["DE", "GB", "US"]):
        request["filters"] = {"card_country": {"in": countries}}
        request["group_by"] = {"departement": "departement", "card_country": "value"}
        (noisy / "request.yaml").write_text(yaml.safe_dump(request))
        code, output = release(
            noisy, "--noise-secret-file", str(noisy / "noise.key"), request="request.yaml"
        )
        assert code == 0, output
        tables.append(pd.read_csv(noisy / "out.csv", dtype={"departement": str}))
    merged = tables[0].merge(tables[1], on=["departement", "card_country"])
    released = (merged["status_x"] == "released") & (merged["status_y"] == "released")
    assert released.sum() >= 5
    assert (merged.loc[released, "subjects_x"] == merged.loc[released, "subjects_y"]).all()
