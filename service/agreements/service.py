"""Agreements: every query is filtered to what the caller may see (a partner: its own only).

Changes never overwrite: each writes a new version row and bumps the head's version, which
SQLAlchemy checks on update (a concurrent change fails with 409).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Select, Table, false, select
from sqlalchemy.orm import Session

from anonymization.errors import InvalidRequest, PartageError
from anonymization.hierarchies import Hierarchy
from policies.decisions import (
    AgreementInvalid,
    AgreementStatus,
    AgreementTerms,
    status_reasons,
    stored_terms,
)
from policies.microdata import (
    MicrodataReleaseSpec,
    at_stored_levels,
    check_microdata,
    check_mondrian,
    released_columns,
)
from policies.models import Policy
from policies.requests import Reason, check_policy
from service.agreements.models import ACTIVE, REVOKED, SUSPENDED, Agreement, AgreementVersion
from service.agreements.schemas import (
    AgreementCreate,
    AgreementOut,
    AgreementUpdate,
    AgreementVersionOut,
)
from service.audit import service as audit
from service.auth.deps import Caller
from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.datasets.reading import resolve_hierarchies
from service.datasets.schemas import DatasetPolicy
from service.db import utcnow
from service.errors import Conflict, NotFound
from service.partners.models import Partner
from service.storage import EncryptedStore, WrappedKey

PSEUDONYM_KEYS = "pseudonym-keys"
PSEUDONYM_SECRET_BYTES = 32
_AGREEMENT = cast(Table, Agreement.__table__)

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


def _referenced(
    session: Session, model: type[Partner] | type[Dataset], object_id: uuid.UUID, field: str
) -> None:
    found = session.get(model, object_id)
    if found is None or getattr(found, "deleted_at", None) is not None:
        raise InvalidRequest(f"no {model.__tablename__} {object_id}", field=field, code="unknown")


def microdata_hierarchies(dataset: Dataset, release: MicrodataReleaseSpec) -> dict[str, Hierarchy]:
    """Each released column's hierarchy (by column), from its stored level up."""
    dataset_policy = datasets.policy_of(dataset)
    spec = released_columns(dataset_policy.dataset, release)
    named = DatasetPolicy(dataset=spec, hierarchies=dataset_policy.hierarchies)
    built = resolve_hierarchies(named, dataset.hierarchy_files)
    return at_stored_levels(spec, built, release)


def _check_microdata(dataset: Dataset, terms: AgreementTerms) -> None:
    assert isinstance(terms.release, MicrodataReleaseSpec)
    if terms.limits.max_cells is not None:
        raise InvalidRequest(
            "max_cells limits aggregate releases; a microdata release has no cells",
            field="limits.max_cells",
            code="not_applicable",
        )
    dataset_policy = datasets.policy_of(dataset)
    check_microdata(dataset_policy.dataset, dataset_policy.hierarchies, terms.release)
    check_mondrian(
        dataset_policy.dataset, dataset_policy.hierarchies, terms.release, dataset.columns
    )
    microdata_hierarchies(dataset, terms.release)


def check_release(session: Session, dataset_id: uuid.UUID, terms: AgreementTerms) -> None:
    """Raise (422, naming the field) unless the release block fits the dataset's policy."""
    dataset = session.get_one(Dataset, dataset_id)
    try:
        if isinstance(terms.release, MicrodataReleaseSpec):
            _check_microdata(dataset, terms)
            return
        dataset_policy = datasets.policy_of(dataset)
        policy = Policy(
            dataset=dataset_policy.dataset,
            hierarchies=dataset_policy.hierarchies,
            release=terms.release,
        )
        check_policy(policy, datasets.hierarchies_of(dataset))
    except PartageError as error:
        if error.field and not error.field.startswith(("release", "limits")):
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


PAST = {
    "create": "created",
    "update": "updated",
    "suspend": "suspended",
    "resume": "resumed",
    "revoke": "revoked",
}


def _add_version(
    session: Session, agreement: Agreement, terms: dict[str, Any], change: str, caller: Caller
) -> None:
    """Write the new version and record the change in the audit log."""
    session.add(_snapshot(agreement, terms, change, caller))
    session.flush()
    audit.append(
        session,
        caller.client_id,
        f"agreement.{PAST[change]}",
        f"agreement:{agreement.id}",
        {"version": agreement.version, "status": agreement.status},
    )


def _terms(body: AgreementTerms) -> dict[str, Any]:
    terms = body.model_dump(
        mode="json", include=set(AgreementTerms.model_fields), by_alias=True, exclude_none=True
    )
    terms["valid_from"], terms["valid_until"] = body.valid_from, body.valid_until
    return terms


def create(
    session: Session, store: EncryptedStore, caller: Caller, body: AgreementCreate
) -> Agreement:
    """Version 1 of a new agreement; a microdata agreement gets its own random pseudonym key."""
    _referenced(session, Partner, body.partner_id, "partner_id")
    datasets.lock(session, body.dataset_id)
    _referenced(session, Dataset, body.dataset_id, "dataset_id")
    check_release(session, body.dataset_id, body)
    agreement = Agreement(
        id=uuid.uuid4(),
        partner_id=body.partner_id,
        dataset_id=body.dataset_id,
        kind=body.release.kind,
    )
    if agreement.kind == "microdata":
        secret = secrets.token_bytes(PSEUDONYM_SECRET_BYTES)
        wrapped = store.wrap_secret(PSEUDONYM_KEYS, str(agreement.id), secret)
        agreement.pseudonym_key_id, agreement.pseudonym_key = wrapped.key_id, wrapped.wrapped
    session.add(agreement)
    session.flush()
    _add_version(session, agreement, _terms(body), "create", caller)
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
    if body.release.kind != agreement.kind:
        raise InvalidRequest(
            f"this agreement releases {agreement.kind}; its kind cannot change "
            "(create another agreement)",
            field="release.kind",
            code="kind_changed",
        )
    check_release(session, agreement.dataset_id, body)
    agreement.updated_at = utcnow()
    session.flush()
    _add_version(session, agreement, _terms(body), "update", caller)
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
    _add_version(session, agreement, terms, action, caller)
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


def _pseudonym_wrapped(agreement: Agreement) -> WrappedKey:
    assert agreement.pseudonym_key_id is not None and agreement.pseudonym_key is not None
    return WrappedKey(agreement.pseudonym_key_id, agreement.pseudonym_key)


def pseudonym_secret(store: EncryptedStore, agreement: Agreement) -> bytes:
    """The microdata agreement's pseudonym secret, unwrapped (for the release job only)."""
    return store.unwrap_secret(PSEUDONYM_KEYS, str(agreement.id), _pseudonym_wrapped(agreement))


def rewrap_pseudonym_keys(session: Session, store: EncryptedStore) -> int:
    """Wrap every pseudonym secret with the newest storage key; the number re-wrapped.

    Written with a plain UPDATE: through the ORM it would bump the agreement's version (the
    optimistic lock's counter) to one with no terms, and no request could be made under it."""
    found = session.execute(
        select(Agreement.id, Agreement.pseudonym_key_id, Agreement.pseudonym_key)
        .where(Agreement.pseudonym_key.is_not(None))
        .with_for_update()
    ).all()
    for agreement_id, key_id, wrapped in found:
        assert key_id is not None and wrapped is not None
        key = store.rewrap(PSEUDONYM_KEYS, str(agreement_id), WrappedKey(key_id, wrapped))
        session.execute(
            sa.update(_AGREEMENT)
            .where(_AGREEMENT.c.id == agreement_id)
            .values(pseudonym_key_id=key.key_id, pseudonym_key=key.wrapped)
        )
    return len(found)


def terms_of(version: AgreementVersion) -> AgreementTerms:
    """The terms a version holds, as the policy layer's model; AgreementInvalid naming the
    fields that no longer pass the checks (bounds tightened since the version was written)."""
    return stored_terms(
        {name: getattr(version, name) for name in AgreementTerms.model_fields},
        f"version {version.version} of agreement {version.agreement_id}",
    )


def _checked(version: AgreementVersion) -> tuple[AgreementTerms | None, list[Reason]]:
    """The version's terms, or none and why they no longer pass the checks."""
    try:
        return terms_of(version), []
    except AgreementInvalid as error:
        return None, error.reasons


def _version_out(
    version: AgreementVersion, problems: list[Reason], caller: Caller
) -> AgreementVersionOut:
    stored = {name: getattr(version, name) for name in AgreementVersionOut.stored_fields()}
    if not caller.is_admin:
        # Which client ids exist is never told to a partner (the token endpoint does not).
        stored["changed_by"] = None
    return AgreementVersionOut.model_validate(
        {**stored, "valid": not problems, "problems": problems}
    )


def version_out(version: AgreementVersion, caller: Caller) -> AgreementVersionOut:
    """A version as stored, as ``caller`` may see it, and whether its terms still pass the
    checks (if not, why)."""
    return _version_out(version, _checked(version)[1], caller)


def to_out(session: Session, agreement: Agreement, caller: Caller) -> AgreementOut:
    """The agreement at its current version, as ``caller`` may see it."""
    version = current_version(session, agreement)
    terms, problems = _checked(version)
    status = cast(AgreementStatus, agreement.status)
    in_force = terms is not None and not status_reasons(status, terms, utcnow())
    return AgreementOut.model_validate(
        {
            **_version_out(version, problems, caller).model_dump(),
            "id": agreement.id,
            "partner_id": agreement.partner_id,
            "dataset_id": agreement.dataset_id,
            "in_force": in_force,
            "created_at": agreement.created_at,
            "updated_at": agreement.updated_at,
        }
    )
