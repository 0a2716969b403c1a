"""The partners' side: dry-run decisions, extract requests (jobs), status, download, manifest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from policies.decisions import Decision
from policies.models import OutputFormat
from service.auth.deps import ReaderCaller, RequesterCaller
from service.deps import SessionDep, StoreDep
from service.errors import DeniedBody, ErrorBody, error_response
from service.extracts import service
from service.extracts.models import Extract
from service.extracts.schemas import ExtractOut, ExtractStatus, ManifestOut, RequestBody

router = APIRouter(tags=["extracts"])

CHUNK = 1 << 20
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}
DENIED: dict[int | str, dict[str, Any]] = {
    403: {"model": DeniedBody, "description": "Denied by the policy: every reason is listed"},
    429: {"model": ErrorBody, "description": "Rate limit or monthly quota: see `Retry-After`"},
}


@router.post(
    "/agreements/{agreement_id}/decisions",
    summary="Dry run: the policy's decision on a request, nothing released",
)
def dry_run(
    agreement_id: uuid.UUID, body: RequestBody, session: SessionDep, caller: RequesterCaller
) -> Decision:
    return service.dry_run(session, caller, agreement_id, body)


@router.post(
    "/agreements/{agreement_id}/extracts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExtractOut,
    responses=DENIED,
    summary="Request an extract: a job (poll `GET /extracts/{id}`); denied with reasons",
)
def request_extract(
    agreement_id: uuid.UUID,
    body: RequestBody,
    session: SessionDep,
    caller: RequesterCaller,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="same key and body: the same extract; same key, other body: 409",
        ),
    ] = None,
) -> ExtractOut | JSONResponse:
    # A denial is answered, not raised, so that its audit event commits.
    extract = service.request_extract(session, caller, agreement_id, body, idempotency_key)
    if not isinstance(extract, Extract):
        return error_response(extract)
    response.headers["Location"] = f"/extracts/{extract.id}"
    # Runs after the transaction has committed: the job is then visible to the workers.
    background.add_task(request.app.state.pool.wake)
    return service.to_out(extract)


@router.get("/extracts", summary="Extracts the caller may see (a partner: its own), newest first")
def list_extracts(
    session: SessionDep,
    caller: ReaderCaller,
    agreement_id: uuid.UUID | None = None,
    status: ExtractStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ExtractOut]:
    found = service.search(session, caller, agreement_id, status, limit)
    return [service.to_out(extract) for extract in found]


@router.get("/extracts/{extract_id}", summary="An extract: status, progress, failure reason")
def get_extract(extract_id: uuid.UUID, session: SessionDep, caller: ReaderCaller) -> ExtractOut:
    return service.to_out(service.get(session, caller, extract_id))


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


@router.get(
    "/extracts/{extract_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {media: {} for media in MEDIA_TYPES.values()}},
        410: {"model": ErrorBody, "description": "The release expired (its record is kept)"},
    },
    summary="Stream the release in a format it was produced in (default: the requested one)",
)
def download(
    extract_id: uuid.UUID,
    session: SessionDep,
    store: StoreDep,
    caller: ReaderCaller,
    format: OutputFormat | None = None,
) -> StreamingResponse:
    fmt, data = service.download(session, store, caller, extract_id, format)
    headers = {
        "Content-Disposition": f'attachment; filename="extract-{extract_id}.{fmt}"',
        "Content-Length": str(len(data)),
    }
    return StreamingResponse(_chunks(data), media_type=MEDIA_TYPES[fmt], headers=headers)


@router.get(
    "/extracts/{extract_id}/manifest",
    response_class=JSONResponse,
    responses={200: {"model": ManifestOut}},
    summary="The signed manifest (verify with `partage verify` and `/.well-known/jwks.json`)",
)
def get_manifest(extract_id: uuid.UUID, session: SessionDep, caller: ReaderCaller) -> JSONResponse:
    # Returned as stored: the signature covers exactly these members.
    return JSONResponse(service.manifest(session, caller, extract_id))
