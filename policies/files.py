"""Reading policy and request files (YAML or JSON) into validated models."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import rfc8785
import yaml
from pydantic import BaseModel, ValidationError

from anonymization.errors import InvalidRequest, invalid_field

Model = TypeVar("Model", bound=BaseModel)


def read_document(path: Path) -> dict[str, Any]:
    """A YAML or JSON file's top-level mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidRequest(f"cannot read {path}: {error.strerror}", field=str(path)) from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"{path} is not UTF-8 text", field=str(path)) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidRequest(f"{path} is not valid YAML or JSON{where}", field=str(path)) from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"{path} must hold a mapping at its top level", field=str(path))
    return document


def parse(model: type[Model], document: dict[str, Any], prefix: str = "") -> Model:
    """Validate a document as ``model``; the first problem is raised as an InvalidRequest."""
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise invalid_field(error, prefix) from None


def digest(document: Any) -> str:
    """SHA-256 of the document's canonical JSON (RFC 8785), so equal content hashes equal."""
    return "sha256:" + hashlib.sha256(rfc8785.dumps(document)).hexdigest()
