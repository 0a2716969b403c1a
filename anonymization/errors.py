"""Typed errors of the pure layers: each carries a machine-readable code, a field and a detail.

The service maps them to HTTP once (one exception handler); the CLI maps them to exit code 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class PartageError(Exception):
    """Base of every error the engine or the policies raise on bad input."""

    code = "invalid"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str | None]:
        """The JSON body the service and the CLI show."""
        return {"error": self.code, "field": self.field, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class InvalidRequest(PartageError):
    """A request or a policy file that is malformed or names unknown things."""

    code = "invalid_request"


class PolicyViolation(PartageError):
    """A well-formed request that the policy does not allow."""

    code = "policy_violation"


class HierarchyError(PartageError):
    """A hierarchy that is malformed or does not cover a value of the data."""

    code = "hierarchy_error"


class DataError(PartageError):
    """An input table that cannot be read or does not match its declared schema."""

    code = "invalid_data"


class AuditFailure(PartageError):
    """The independent audit found a suppressed cell that the release lets be recovered."""

    code = "audit_failed"


def invalid_field(
    error: ValidationError, prefix: str = "", *, default: str | None = None, code: str | None = None
) -> InvalidRequest:
    """The first problem of a pydantic validation error, as an InvalidRequest naming its field
    under ``prefix`` (``manifest.plan.protection.k``), or ``default`` when it has no location.
    Validator wrappers (``function-after``) are not part of the name."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if part != "function-after"]
    field = ".".join(part for part in (prefix, *location) if part) or default
    return InvalidRequest(first["msg"], field=field, code=code)
