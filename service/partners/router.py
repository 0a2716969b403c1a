"""``/partners``: administrators register partners and rotate their secrets."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from service.auth.deps import AdminCaller
from service.auth.models import OAuthClient
from service.deps import SessionDep
from service.partners import service
from service.partners.models import Partner
from service.partners.schemas import PartnerCreate, PartnerCredentials, PartnerOut

router = APIRouter(prefix="/partners", tags=["partners"])


def _credentials(created: tuple[Partner, OAuthClient, str]) -> PartnerCredentials:
    partner, client, secret = created
    out = service.to_out(partner, client)
    return PartnerCredentials(partner=out, client_id=out.client_id, client_secret=secret)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a partner and its client")
def create_partner(body: PartnerCreate, session: SessionDep, _: AdminCaller) -> PartnerCredentials:
    return _credentials(service.create(session, body))


@router.get("", summary="List partners")
def list_partners(session: SessionDep, _: AdminCaller) -> list[PartnerOut]:
    return [service.to_out(partner, client) for partner, client in service.list_all(session)]


@router.get("/{partner_id}", summary="One partner")
def get_partner(partner_id: uuid.UUID, session: SessionDep, _: AdminCaller) -> PartnerOut:
    return service.to_out(*service.get(session, partner_id))


@router.post("/{partner_id}/secret", summary="Rotate a partner's client secret (shown once)")
def rotate_partner_secret(
    partner_id: uuid.UUID, session: SessionDep, _: AdminCaller
) -> PartnerCredentials:
    return _credentials(service.new_secret(session, partner_id))
