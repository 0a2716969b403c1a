"""Partners and their OAuth2 clients; every query here is for administrators only."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.text import name_key
from service.audit import service as audit
from service.auth.models import PARTNER_SCOPES, OAuthClient
from service.auth.service import create_client, rotate_secret
from service.errors import NotFound, duplicate_name
from service.partners.models import Partner
from service.partners.schemas import PartnerCreate, PartnerOut


def to_out(partner: Partner, client: OAuthClient) -> PartnerOut:
    return PartnerOut(
        id=partner.id,
        name=partner.name,
        contact_email=partner.contact_email,
        client_id=client.client_id,
        scopes=sorted(client.scopes),
        created_at=partner.created_at,
    )


def create(session: Session, actor: str, body: PartnerCreate) -> tuple[Partner, OAuthClient, str]:
    """A partner, its client and the client's secret in clear (shown once)."""
    existing = find_by_name(session, body.name)
    if existing is not None:
        raise duplicate_name("partner", existing.name)
    partner = Partner(name=body.name, contact_email=body.contact_email)
    session.add(partner)
    session.flush()
    client, secret = create_client(session, body.name, PARTNER_SCOPES, partner.id)
    audit.append(
        session, actor, "partner.created", f"partner:{partner.id}", {"client_id": client.client_id}
    )
    return partner, client, secret


def find_by_name(session: Session, name: str) -> Partner | None:
    """The partner whose name reads as ``name`` does, if any."""
    return session.scalars(select(Partner).where(Partner.name_key == name_key(name))).first()


def list_all(session: Session) -> list[tuple[Partner, OAuthClient]]:
    rows = session.execute(
        select(Partner, OAuthClient)
        .join(OAuthClient, OAuthClient.partner_id == Partner.id)
        .order_by(Partner.created_at, Partner.name)
    )
    return [(partner, client) for partner, client in rows]


def get(session: Session, partner_id: uuid.UUID) -> tuple[Partner, OAuthClient]:
    row = session.execute(
        select(Partner, OAuthClient)
        .join(OAuthClient, OAuthClient.partner_id == Partner.id)
        .where(Partner.id == partner_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no partner {partner_id}", field="partner_id")
    partner, client = row
    return partner, client


def new_secret(
    session: Session, actor: str, partner_id: uuid.UUID
) -> tuple[Partner, OAuthClient, str]:
    partner, client = get(session, partner_id)
    secret = rotate_secret(session, client)
    audit.append(
        session,
        actor,
        "partner.secret_rotated",
        f"partner:{partner.id}",
        {"client_id": client.client_id, "generation": client.secret_generation},
    )
    return partner, client, secret
