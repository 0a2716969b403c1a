"""Errors of the service layer, each carrying its HTTP status, and the one place they become JSON.

The pure layers raise :class:`PartageError` subclasses (bad input: 422); the service adds the
statuses only it can know (401, 403, 404, 409, 413). One handler renders them all as
``{"error": code, "detail": ..., "field": ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from anonymization.errors import PartageError


class ServiceError(PartageError):
    """An error only the service can detect; ``status`` is its HTTP status."""

    status = 400


class InsecureTransport(ServiceError):
    """A token sent in plain HTTP from another machine (see :mod:`service.auth.transport`)."""

    status = 400
    code = "insecure_transport"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


def duplicate_name(kind: str, existing: str) -> Conflict:
    """409 on ``name``: a ``kind`` (partner, dataset) named ``existing`` reads as the name given."""
    return Conflict(
        f"a {kind} named {existing!r} exists (names are compared ignoring case, spacing and"
        " Unicode normalisation)",
        field="name",
        code="duplicate",
    )


class Gone(ServiceError):
    status = 410
    code = "gone"


class StoredFileUnreadable(ServiceError):
    """A stored file that is missing or does not decrypt though its row says it is there:
    damaged or tampered with on disk, not the caller's doing."""

    status = 500
    code = "storage"


class UnsupportedMediaType(ServiceError):
    """A body in another content type where the route reads JSON."""

    status = 415
    code = "unsupported_media_type"

    def __init__(self, content_type: str | None) -> None:
        sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        super().__init__(
            f"send the body as application/json (the request has {sent})", field="body"
        )


class TooManyRequests(ServiceError):
    """Over a rate limit or a quota; ``retry_after`` seconds until it may succeed."""

    status = 429
    code = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = max(1, retry_after)


class Denied(ServiceError):
    """The policy's decision is *deny*: every reason is listed in ``reasons``."""

    status = 403
    code = "denied"

    def __init__(self, reasons: list[dict[str, str]]) -> None:
        first = reasons[0]
        super().__init__("; ".join(reason["detail"] for reason in reasons), field=first["field"])
        self.reasons = reasons

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "reasons": self.reasons}


class ErrorBody(BaseModel):
    """The JSON body of every error response."""

    error: str
    detail: str
    field: str | None = None


class ReasonBody(BaseModel):
    code: str
    field: str
    detail: str


class DeniedBody(ErrorBody):
    """A denied request: every reason of the decision."""

    reasons: list[ReasonBody]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Plain HTTP from another machine (`insecure_transport`): use https"),
        (401, "Missing, invalid or expired bearer token"),
        (403, "The token lacks the scope this route needs"),
        (404, "No such object visible to the caller"),
        (409, "Conflicting state (stale version, object in use)"),
        (413, "Request body too large"),
        (415, "A body that is not `application/json` where JSON is expected"),
        (422, "Invalid input; `field` names the offending field"),
        (429, "Too many requests: wait `Retry-After` seconds"),
    )
}

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _body(code: str, detail: str, field: str | None) -> dict[str, str | None]:
    return {"error": code, "detail": detail, "field": field}


# Tags of the `kind` unions (a release block, a request body): pydantic puts the tag chosen in
# the error's location, where it names no field.
KIND_TAGS = ("aggregate", "microdata")


def _field_of(location: Sequence[Any]) -> str | None:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    parts = [
        part
        for index, part in enumerate(parts)
        if not (part in KIND_TAGS and (index == 0 or parts[index - 1] == "release"))
    ]
    return ".".join(parts) or None


# pydantic's types for "not an object" where a body model or a union of them is expected.
_NOT_AN_OBJECT = ("model_attributes_type", "model_type", "dict_type")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "a string"


def _problem(error: Any) -> tuple[str | None, str]:
    """The field an error names and what is wrong with it; the whole body is ``body``."""
    location, kind = tuple(error.get("loc", ())), error.get("type")
    if kind == "json_invalid":  # FastAPI puts the character offset in the location
        reason = error.get("ctx", {}).get("error", "invalid")
        return "body", f"malformed JSON at position {location[-1]}: {reason}"
    field = _field_of(location)
    whole_body = field is None and location[:1] == ("body",)
    if whole_body and kind == "missing":
        return "body", "a JSON object is required and the request has no body"
    if whole_body and kind in _NOT_AN_OBJECT:
        return "body", f"must be a JSON object, not {_json_kind(error.get('input'))}"
    return field, str(error.get("msg", "invalid"))


def validation_error_body(errors: Sequence[Any]) -> dict[str, str | None]:
    """One 422 body naming the first offending field and listing every problem."""
    problems = [_problem(error) for error in errors]
    detail = "; ".join(f"{field}: {message}" if field else message for field, message in problems)
    return _body(
        "invalid_request", detail or "invalid request", problems[0][0] if problems else None
    )


def error_response(error: Exception) -> JSONResponse:
    """The JSON response for any expected failure (the app's one exception handler)."""
    headers = None
    if isinstance(error, PartageError):
        status = error.status if isinstance(error, ServiceError) else 422
        body = dict(error.to_dict())
    elif isinstance(error, RequestValidationError):
        status, body = 422, validation_error_body(error.errors())
    elif isinstance(error, StaleDataError):
        status = 409
        body = _body("stale_version", "the object was changed meanwhile; reload it", "version")
    elif isinstance(error, IntegrityError):
        # A uniqueness race lost to a concurrent request: nothing was written.
        status, body = 409, _body("conflict", "a concurrent change conflicts with this one", None)
    else:
        assert isinstance(error, StarletteHTTPException)
        status, headers = error.status_code, error.headers
        body = _body(_HTTP_CODES.get(status, "http_error"), str(error.detail), None)
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after)}
    return JSONResponse(body, status_code=status, headers=headers)


async def _handle(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, RequestValidationError) and isinstance(error.body, bytes):
        # FastAPI leaves a body unparsed when its content type is not JSON.
        return error_response(UnsupportedMediaType(request.headers.get("content-type")))
    return error_response(error)


def install_error_handler(app: FastAPI) -> None:
    """Route every expected failure to :func:`error_response`."""
    for error_class in (
        PartageError,
        RequestValidationError,
        StaleDataError,
        IntegrityError,
        StarletteHTTPException,
    ):
        app.add_exception_handler(error_class, _handle)
