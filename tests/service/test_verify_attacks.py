"""Forging a release past `partage verify`: any one byte changed in the manifest or in the
file, another release's file of the same partner, a key id swapped for another published key,
a key no longer published, the algorithm switched (none, HS256 keyed with the public key), and
a member written twice (the signature covers the last, other readers may show the first).

Not verified is exit 1 and verified exit 0 (README); a file that cannot be read as a manifest
is exit 2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from service.cli import app as cli
from tests.service.journey import REQUEST, make_agreement, request_and_wait

SETTINGS = hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def released(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Any,
    make_partner: Any,
    tmp_path: Path,
) -> dict[str, Any]:
    """Two releases to one partner, as downloaded: their manifests and CSV files, and the
    JWKS (two keys: the second release was signed after a rotation)."""
    dataset, partner = make_dataset(), make_partner("Partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"])
    headers, found = partner["headers"], {}
    for name, request in (("first", REQUEST), ("second", {**REQUEST, "totals": False})):
        extract = request_and_wait(client, headers, agreement["id"], request)
        assert extract["status"] == "succeeded", extract
        manifest = client.get(f"/extracts/{extract['id']}/manifest", headers=headers)
        data = client.get(f"/extracts/{extract['id']}/download", headers=headers).content
        (tmp_path / f"{name}.json").write_bytes(manifest.content)
        (tmp_path / f"{name}.csv").write_bytes(data)
        found[name] = {"manifest": manifest.content, "data": data}
        if name == "first":
            app.state.signing_keys.rotate()
    jwks = client.get("/.well-known/jwks.json").json()
    assert len(jwks["keys"]) == 2
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    return {**found, "folder": tmp_path, "jwks": jwks}


def _verify(folder: Path, manifest: str, data: str, jwks: str = "jwks.json") -> Any:
    arguments = [str(folder / manifest), str(folder / data), "--jwks", str(folder / jwks)]
    return CliRunner().invoke(cli, ["verify", *arguments])


def _write_manifest(folder: Path, document: dict[str, Any]) -> None:
    (folder / "forged.json").write_text(json.dumps(document))


def _same(target: str, changed: bytes, original: bytes) -> bool:
    """Whether the changed bytes say the same: a manifest is read as JSON, a file as bytes."""
    if target == "data":
        return changed == original
    try:
        return bool(json.loads(changed) == json.loads(original))
    except ValueError:
        return False


@pytest.mark.parametrize("target", ["manifest", "data"])
@SETTINGS
@given(position=st.integers(0, 1 << 20), byte=st.integers(0, 255))
def test_any_one_byte_changed_in_the_manifest_or_the_file_is_refused(
    released: dict[str, Any], target: str, position: int, byte: int
) -> None:
    folder, original = released["folder"], released["first"][target]
    index = position % len(original)
    changed = original[:index] + bytes([byte]) + original[index + 1 :]
    names = {"manifest": "first.json", "data": "first.csv"}
    names[target] = "forged"
    (folder / "forged").write_bytes(changed)
    result = _verify(folder, names["manifest"], names["data"])
    if _same(target, changed, original):
        assert result.exit_code == 0, result.output
    elif target == "data":
        assert result.exit_code == 1, result.output
        assert "none of the manifest's outputs" in result.output
    else:
        assert result.exit_code in (1, 2), result.output
        assert "verified:" not in result.output


def test_both_releases_verify_the_older_under_its_retired_key(released: dict[str, Any]) -> None:
    folder = released["folder"]
    first, second = (json.loads(released[name]["manifest"]) for name in ("first", "second"))
    assert first["signature"]["kid"] != second["signature"]["kid"]
    for name in ("first", "second"):
        result = _verify(folder, f"{name}.json", f"{name}.csv")
        assert result.exit_code == 0, result.output


def test_another_release_file_of_the_same_partner_is_refused(released: dict[str, Any]) -> None:
    result = _verify(released["folder"], "first.json", "second.csv")
    assert result.exit_code == 1
    assert "belongs to another release" in result.output


def test_a_key_id_swapped_for_the_other_published_key_is_refused(
    released: dict[str, Any],
) -> None:
    folder = released["folder"]
    first, second = (json.loads(released[name]["manifest"]) for name in ("first", "second"))
    swapped = {**first, "signature": {**first["signature"], "kid": second["signature"]["kid"]}}
    _write_manifest(folder, swapped)
    result = _verify(folder, "forged.json", "first.csv")
    assert result.exit_code == 1
    assert "does not match" in result.output


def test_a_manifest_whose_key_is_no_longer_published_is_refused(
    released: dict[str, Any],
) -> None:
    folder, jwks = released["folder"], released["jwks"]
    kid = json.loads(released["first"]["manifest"])["signature"]["kid"]
    kept = {"keys": [key for key in jwks["keys"] if key["kid"] != kid]}
    (folder / "later.json").write_text(json.dumps(kept))
    result = _verify(folder, "first.json", "first.csv", "later.json")
    assert result.exit_code == 1
    assert f"no key '{kid}' in the JWKS" in result.output


def _unsigned(manifest: dict[str, Any]) -> bytes:
    return rfc8785.dumps({name: value for name, value in manifest.items() if name != "signature"})


def test_switching_the_algorithm_is_refused(released: dict[str, Any]) -> None:
    """`none`, and HS256 keyed with the public key (the classic confusion): whatever its value,
    only an Ed25519 signature by a published key is accepted."""
    folder = released["folder"]
    manifest = json.loads(released["first"]["manifest"])
    forged = {**manifest, "cells": manifest["cells"] + 1}
    kid = manifest["signature"]["kid"]
    public = next(key for key in released["jwks"]["keys"] if key["kid"] == kid)["x"]
    tag = hmac.new(public.encode(), _unsigned(forged), hashlib.sha256).digest()
    value = base64.urlsafe_b64encode(tag).rstrip(b"=").decode()
    for signature in (
        {"alg": "none", "kid": kid, "value": ""},
        {"alg": "HS256", "kid": kid, "value": value},
        {"alg": "EdDSA", "kid": kid, "value": value},
        {"kid": kid, "value": manifest["signature"]["value"]},
    ):
        _write_manifest(folder, {**forged, "signature": signature})
        result = _verify(folder, "forged.json", "first.csv")
        assert result.exit_code == 1, (signature, result.output)
        assert "unsupported signature algorithm" in result.output


def test_a_member_written_twice_is_refused(released: dict[str, Any]) -> None:
    """JSON readers disagree on which of two same-named members counts; the signature covered
    the last one only, so a forged `cells` written first still verified."""
    folder, original = released["folder"], released["first"]["manifest"].decode()
    assert original.startswith('{"manifest_version":')
    (folder / "forged.json").write_text('{"cells": 1000000, ' + original[1:])
    result = _verify(folder, "forged.json", "first.csv")
    assert result.exit_code == 2, result.output
    assert "'cells' appears twice" in result.output
