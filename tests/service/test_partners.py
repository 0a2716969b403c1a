"""``/partners``: registration, listing, secret rotation (concurrent ones too)."""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from service.audit import service as audit
from service.errors import Conflict, error_response
from service.partners import service as partners
from tests.service.conftest import token_for
from tests.service.factories import name_variants


def test_register_list_and_get_partners(client: TestClient, admin, make_partner) -> None:  # type: ignore[no-untyped-def]
    first = make_partner("Office de tourisme")
    make_partner("Agence de l'énergie")
    listed = client.get("/partners", headers=admin).json()
    assert [p["name"] for p in listed] == ["Office de tourisme", "Agence de l'énergie"]
    assert all("client_secret" not in p and "secret_hash" not in p for p in listed)
    one = client.get(f"/partners/{first['id']}", headers=admin).json()
    assert one["client_id"] == first["client_id"]


def test_duplicate_name_is_409_and_bad_body_is_422_naming_the_field(
    client: TestClient,
    admin,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    make_partner("Same")
    duplicate = client.post("/partners", json={"name": "Same"}, headers=admin)
    assert duplicate.status_code == 409
    assert duplicate.json()["field"] == "name"
    bad = client.post("/partners", json={"name": "X", "contact_email": "nope"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["field"] == "contact_email"
    assert bad.json()["error"] == "invalid_request"


def test_rotating_a_secret_invalidates_the_old_secret_and_its_tokens(
    client: TestClient,
    admin,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    partner = make_partner("Rotating")
    old_headers = partner["headers"]
    assert client.get("/agreements", headers=old_headers).status_code in (200, 404)
    rotated = client.post(f"/partners/{partner['id']}/secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert new_secret != partner["client_secret"]
    stale = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
    }
    assert client.post("/oauth/token", data=stale).status_code in (400, 401)
    assert token_for(client, partner["client_id"], new_secret)


def test_unknown_partner_is_404(client: TestClient, admin) -> None:  # type: ignore[no-untyped-def]
    missing = "00000000-0000-0000-0000-000000000000"
    response = client.get(f"/partners/{missing}", headers=admin)
    assert response.status_code == 404
    assert client.get("/partners/not-a-uuid", headers=admin).json()["field"] == "partner_id"


def test_a_rotation_from_a_stale_read_is_409_and_changes_nothing(
    app: FastAPI,
    client: TestClient,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    partner_id = uuid.UUID(make_partner("Raced")["id"])
    with app.state.sessionmaker() as first, app.state.sessionmaker() as second:
        stale = partners.get(second, partner_id)  # second reads generation 1...
        _, _, winner = partners.new_secret(first, "admin", partner_id)
        first.commit()  # ...first rotates to generation 2...
        with pytest.raises(Conflict) as lost:  # ...and second's rotation, from 1, is refused.
            partners.new_secret(second, "admin", partner_id)
        assert (lost.value.code, lost.value.field) == ("concurrent_rotation", "client_secret")
        assert stale[1].secret_generation == 1
    assert error_response(lost.value).status_code == 409
    assert token_for(client, make_client_id(app, partner_id), winner)


def make_client_id(app: FastAPI, partner_id: uuid.UUID) -> str:
    with app.state.sessionmaker() as session:
        return partners.get(session, partner_id)[1].client_id


def test_concurrent_rotations_return_only_secrets_that_work(
    app: FastAPI,
    client: TestClient,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    partner_id = uuid.UUID(make_partner("Rotated at once")["id"])
    rotations = 5
    start = threading.Barrier(rotations)
    secrets: list[str] = []
    conflicts: list[Conflict] = []
    errors: list[BaseException] = []

    def rotate() -> None:
        with app.state.sessionmaker() as session:
            read = partners.get(session, partner_id)
            start.wait()  # every rotation has read generation 1 before any writes
            assert read[1].secret_generation == 1
            try:
                secret = partners.new_secret(session, "admin", partner_id)[2]
                session.commit()
                secrets.append(secret)
            except Conflict as conflict:
                conflicts.append(conflict)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=rotate) for _ in range(rotations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(secrets) == 1 and len(conflicts) == rotations - 1
    client_id = make_client_id(app, partner_id)
    assert token_for(client, client_id, secrets[0])
    with app.state.sessionmaker() as session:
        assert partners.get(session, partner_id)[1].secret_generation == 2
        events = audit.search(session, "partner.secret_rotated", None, None, 0, 100)
        assert len(events) == 1


def test_a_name_that_reads_as_an_existing_one_is_a_409(
    client: TestClient,
    admin,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    originals = ["Office de tourisme", "Laboratoire universitaire", "Évry Énergie"]
    for name in originals:
        make_partner(name)

    @given(name_variants(originals))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(drawn: tuple[str, str]) -> None:
        name, variant = drawn
        response = client.post("/partners", json={"name": variant}, headers=admin)
        assert response.status_code == 409, (variant, response.text)
        assert (response.json()["error"], response.json()["field"]) == ("duplicate", "name")
        assert repr(name) in response.json()["detail"]

    refused()
    assert len(client.get("/partners", headers=admin).json()) == len(originals)


def test_names_are_stored_trimmed_and_composed(client: TestClient, make_partner) -> None:  # type: ignore[no-untyped-def]
    partner = make_partner("  E\u0301vry  ")
    assert partner["partner"]["name"] == "Évry"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "\u200b\u00a0"}, "name"),
        ({"name": "a\u0000b"}, "name"),
        ({"name": "line\nbreak"}, "name"),
        ({"name": "Office \u202egpj.exe"}, "name"),
        ({"name": "\u2067Mairie\u2069"}, "name"),
        ({"name": "X", "contact_email": "a@b\u0000"}, "contact_email"),
        ({"name": "X", "contact_email": "a@b\u001b"}, "contact_email"),
    ],
)
def test_blank_names_and_control_characters_are_422_naming_the_field(
    client: TestClient,
    admin,
    body: dict[str, str],
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    response = client.post("/partners", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "blank" in response.json()["detail"] or "control character" in response.json()["detail"]
