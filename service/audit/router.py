"""``/audit``: administrators read the hash-chained audit log and have it recomputed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from service.audit import service
from service.audit.schemas import AuditEventOut, AuditPage, ChainReportOut
from service.auth.deps import AdminCaller
from service.bounds import DB_INT_MAX, PRINTABLE
from service.deps import SessionDep, SigningKeysDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", summary="Audit events, oldest first, filterable; page with `after`")
def list_events(
    session: SessionDep,
    _: AdminCaller,
    action: Annotated[str | None, Query(pattern=PRINTABLE)] = None,
    actor: Annotated[str | None, Query(pattern=PRINTABLE)] = None,
    object: Annotated[
        str | None, Query(pattern=PRINTABLE, description="e.g. `agreement:<id>`")
    ] = None,
    after: Annotated[int, Query(ge=0, le=DB_INT_MAX, description="only events after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    events = service.search(session, action, actor, object, after, limit + 1)
    more = len(events) > limit
    items = [AuditEventOut.model_validate(event) for event in events[:limit]]
    return AuditPage(items=items, next_after=items[-1].seq if more else None)


@router.get("/verify", summary="Recompute the whole chain and check the signed heads")
def verify_log(session: SessionDep, keys: SigningKeysDep, _: AdminCaller) -> ChainReportOut:
    report = service.verify_chain(session, keys)
    return ChainReportOut(intact=report.intact, **asdict(report))
