"""Agreements: every query is filtered to what the caller may see (a partner: its own only).

Changes never overwrite: each writes a new version row and bumps the head's version, which
SQLAlchemy checks on update (a concurrent change fails with 409).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

from sqlalchemy import Select, false, select
from sqlalchemy.orm import Session

from anonymization.errors import InvalidRequest, PartageError
from policies.decisions import AgreementStatus, AgreementTerms, status_reasons
from policies.models import Policy
from policies.requests import check_policy
from service.agreements.models import ACTIVE, REVOKED, SUSPENDED, Agreement, AgreementVersion
from service.agreements.schemas import (
    AgreementCreate,
    AgreementOut,
    AgreementUpdate,
    AgreementVersionOut,
)
from service.auth.deps import Caller
from service.datasets import service as datasets
from service.datasets.reading import resolve_hierarchies
from service.datasets.schemas import DatasetPolicy
from service.db import utcnow
from service.errors import Conflict, NotFound
from service.partners.models import Partner

# action → (statuses it applies to, status it leads to)
TRANSITIONS = {
    "suspend": ({ACTIVE}, SUSPENDED),
    "resume": ({SUSPENDED}, ACTIVE),
    "revoke": ({ACTIVE, SUSPENDED}, REVOKED),
}


def visible(caller: Caller) -> Select[Agreement]:
    """The agreements ``caller`` may see: all for an admin, its own for a partner."""
    statement = select(Agreement)
    if caller.is_admin:
        return statement
    if caller.partner_id is None:
        return statement.where(false())
    return statement.where(Agreement.partner_id == caller.partner_id)


def get(session: Session, caller: Caller, agreement_id: uuid.UUID) -> Agreement:
    agreement = session.scalars(visible(caller).where(Agreement.id == agreement_id)).one_or_none()
    if agreement is None:
        raise NotFound(f"no agreement {agreement_id}", field="agreement_id")
    return agreement


def current_version(session: Session, agreement: Agreement) -> AgreementVersion:
    return get_version(session, agreement, agreement.version)


def get_version(session: Session, agreement: Agreement, version: int) -> AgreementVersion:
    found = session.scalars(
        select(AgreementVersion).where(
            AgreementVersion.agreement_id == agreement.id, AgreementVersion.version == version
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"agreement {agreement.id} has no version {version}", field="version")
    return found


def versions(session: Session, agreement: Agreement) -> list[AgreementVersion]:
    return list(
        session.scalars(
            select(AgreementVersion)
            .where(AgreementVersion.agreement_id == agreement.id)
            .order_by(AgreementVersion.version)
        )
    )


def check_release(session: Session, dataset_id: uuid.UUID, terms: AgreementTerms) -> None:
    """Raise (422, naming the field) unless the release block fits the dataset's policy."""
    dataset = datasets.get(session, dataset_id, field="dataset_id")
    dataset_policy = DatasetPolicy.model_validate(
        {"dataset": dataset.spec, "hierarchies": dataset.hierarchies}
    )
    hierarchies = resolve_hierarchies(dataset_policy, dataset.hierarchy_files)
    policy = Policy(
        dataset=dataset_policy.dataset,
        hierarchies=dataset_policy.hierarchies,
        release=terms.release,
    )
    try:
        check_policy(policy, hierarchies)
    except PartageError as error:
        if error.field and not error.field.startswith("release"):
            error.field = f"release.{error.field}"
        raise


def _snapshot(
    agreement: Agreement, terms: dict[str, Any], change: str, caller: Caller
) -> AgreementVersion:
    return AgreementVersion(
        agreement_id=agreement.id,
        version=agreement.version,
        change=change,
        changed_by=caller.client_id,
        status=agreement.status,
        **terms,
    )


def _terms(body: AgreementTerms) -> dict[str, Any]:
    dumped: dict[str, Any] = json.loads(
        body.model_dump_json(
            include=set(AgreementTerms.model_fields), by_alias=True, exclude_none=True
        )
    )
    dumped["valid_from"], dumped["valid_until"] = body.valid_from, body.valid_until
    return dumped


def create(session: Session, caller: Caller, body: AgreementCreate) -> Agreement:
    if session.get(Partner, body.partner_id) is None:
        raise InvalidRequest(f"no partner {body.partner_id}", field="partner_id", code="unknown")
    check_release(session, body.dataset_id, body)
    agreement = Agreement(id=uuid.uuid4(), partner_id=body.partner_id, dataset_id=body.dataset_id)
    session.add(agreement)
    session.flush()
    session.add(_snapshot(agreement, _terms(body), "create", caller))
    session.flush()
    return agreement


def _expect(agreement: Agreement, version: int | None) -> None:
    if version is not None and version != agreement.version:
        raise Conflict(
            f"version {version} is stale: the agreement is at version {agreement.version}",
            field="version",
            code="stale_version",
        )


def update(
    session: Session, caller: Caller, agreement_id: uuid.UUID, body: AgreementUpdate
) -> Agreement:
    agreement = get(session, caller, agreement_id)
    _expect(agreement, body.version)
    if agreement.status == REVOKED:
        raise Conflict("a revoked agreement cannot change", field="status", code="revoked")
    check_release(session, agreement.dataset_id, body)
    agreement.updated_at = utcnow()
    session.flush()
    session.add(_snapshot(agreement, _terms(body), "update", caller))
    session.flush()
    return agreement


def transition(
    session: Session, caller: Caller, agreement_id: uuid.UUID, action: str, version: int | None
) -> Agreement:
    """Suspend, resume or revoke: a new version with the same terms and the new status."""
    agreement = get(session, caller, agreement_id)
    _expect(agreement, version)
    sources, target = TRANSITIONS[action]
    if agreement.status not in sources:
        raise Conflict(
            f"cannot {action} an agreement that is {agreement.status}",
            field="status",
            code="invalid_transition",
        )
    previous = current_version(session, agreement)
    terms = {name: getattr(previous, name) for name in AgreementTerms.model_fields}
    agreement.status, agreement.updated_at = target, utcnow()
    session.flush()
    session.add(_snapshot(agreement, terms, action, caller))
    session.flush()
    return agreement


def search(
    session: Session,
    caller: Caller,
    partner_id: uuid.UUID | None,
    dataset_id: uuid.UUID | None,
    status: str | None,
) -> list[Agreement]:
    statement = visible(caller).order_by(Agreement.created_at)
    if partner_id is not None:
        statement = statement.where(Agreement.partner_id == partner_id)
    if dataset_id is not None:
        statement = statement.where(Agreement.dataset_id == dataset_id)
    if status is not None:
        statement = statement.where(Agreement.status == status)
    return list(session.scalars(statement))


def terms_of(version: AgreementVersion) -> AgreementTerms:
    """The terms a version holds, as the policy layer's model."""
    return AgreementTerms.model_validate(
        {name: getattr(version, name) for name in AgreementTerms.model_fields}
    )


def to_out(session: Session, agreement: Agreement) -> AgreementOut:
    version = current_version(session, agreement)
    status = cast(AgreementStatus, agreement.status)
    in_force = not status_reasons(status, terms_of(version), utcnow())
    return AgreementOut.model_validate(
        {
            **AgreementVersionOut.model_validate(version).model_dump(),
            "id": agreement.id,
            "partner_id": agreement.partner_id,
            "dataset_id": agreement.dataset_id,
            "in_force": in_force,
            "created_at": agreement.created_at,
            "updated_at": agreement.updated_at,
        }
    )
