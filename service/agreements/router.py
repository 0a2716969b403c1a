"""``/agreements``: administrators write versioned agreements; partners read their own."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, status

from policies.decisions import AgreementStatus
from service.agreements import service
from service.agreements.schemas import (
    AgreementCreate,
    AgreementOut,
    AgreementUpdate,
    AgreementVersionOut,
    StatusChange,
)
from service.auth.deps import AdminCaller, ReaderCaller
from service.bounds import DB_INT_MAX
from service.deps import SessionDep, StoreDep

router = APIRouter(prefix="/agreements", tags=["agreements"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an agreement (version 1)")
def create_agreement(
    body: AgreementCreate, session: SessionDep, store: StoreDep, caller: AdminCaller
) -> AgreementOut:
    return service.to_out(session, service.create(session, store, caller, body), caller)


@router.get("", summary="Agreements the caller may see (a partner: its own), filterable")
def list_agreements(
    session: SessionDep,
    caller: ReaderCaller,
    partner_id: uuid.UUID | None = None,
    dataset_id: uuid.UUID | None = None,
    status: AgreementStatus | None = None,
) -> list[AgreementOut]:
    found = service.search(session, caller, partner_id, dataset_id, status)
    return [service.to_out(session, agreement, caller) for agreement in found]


@router.get("/{agreement_id}", summary="An agreement at its current version")
def get_agreement(
    agreement_id: uuid.UUID, session: SessionDep, caller: ReaderCaller
) -> AgreementOut:
    return service.to_out(session, service.get(session, caller, agreement_id), caller)


@router.put(
    "/{agreement_id}", summary="Change the terms: a new version (409 if `version` is stale)"
)
def update_agreement(
    agreement_id: uuid.UUID, body: AgreementUpdate, session: SessionDep, caller: AdminCaller
) -> AgreementOut:
    updated = service.update(session, caller, agreement_id, body)
    return service.to_out(session, updated, caller)


@router.get("/{agreement_id}/versions", summary="Every version of an agreement, oldest first")
def list_versions(
    agreement_id: uuid.UUID, session: SessionDep, caller: ReaderCaller
) -> list[AgreementVersionOut]:
    agreement = service.get(session, caller, agreement_id)
    return [service.version_out(v, caller) for v in service.versions(session, agreement)]


@router.get("/{agreement_id}/versions/{version}", summary="One version of an agreement")
def get_version(
    agreement_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
    session: SessionDep,
    caller: ReaderCaller,
) -> AgreementVersionOut:
    agreement = service.get(session, caller, agreement_id)
    return service.version_out(service.get_version(session, agreement, version), caller)


@router.post(
    "/{agreement_id}/{action}",
    summary="Suspend, resume or revoke (a new version; revoked is final)",
)
def change_status(
    agreement_id: uuid.UUID,
    action: Literal["suspend", "resume", "revoke"],
    session: SessionDep,
    caller: AdminCaller,
    body: Annotated[StatusChange | None, Body()] = None,
) -> AgreementOut:
    version = body.version if body else None
    changed = service.transition(session, caller, agreement_id, action, version)
    return service.to_out(session, changed, caller)
