"""Partners and their OAuth2 clients; every query here is for administrators only."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.models import PARTNER_SCOPES, OAuthClient
from service.auth.service import create_client, rotate_secret
from service.errors import Conflict, NotFound
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


def create(session: Session, body: PartnerCreate) -> tuple[Partner, OAuthClient, str]:
    """A partner, its client and the client's secret in clear (shown once)."""
    if session.scalars(select(Partner.id).where(Partner.name == body.name)).first():
        raise Conflict(f"a partner named {body.name!r} exists", field="name", code="duplicate")
    partner = Partner(name=body.name, contact_email=body.contact_email)
    session.add(partner)
    session.flush()
    client, secret = create_client(session, body.name, PARTNER_SCOPES, partner.id)
    return partner, client, secret


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


def new_secret(session: Session, partner_id: uuid.UUID) -> tuple[Partner, OAuthClient, str]:
    partner, client = get(session, partner_id)
    return partner, client, rotate_secret(session, client)
