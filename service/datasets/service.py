"""Datasets: register (check, encrypt, record), list, get, delete, re-wrap keys. Admins only."""

from __future__ import annotations

import hashlib
import json
import uuid

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from anonymization.errors import InvalidRequest
from policies.files import invalid
from service.agreements.models import LIVE_STATUSES, Agreement
from service.datasets.models import Dataset
from service.datasets.reading import check_table, detect_format, read_table
from service.datasets.schemas import DatasetPolicy
from service.db import utcnow
from service.errors import Conflict, NotFound
from service.storage import EncryptedStore, WrappedKey

KIND = "datasets"


def parse_policy(text: str) -> DatasetPolicy:
    """The ``policy`` form field: JSON with the ``dataset`` block and optional ``hierarchies``."""
    try:
        return DatasetPolicy.model_validate_json(text)
    except ValidationError as error:
        if error.errors()[0]["type"] == "json_invalid":
            raise InvalidRequest(
                f"not valid JSON: {error.errors()[0]['msg']}", field="policy"
            ) from None
        raise invalid(error) from None


def _hierarchy_files(policy: DatasetPolicy, uploaded: dict[str, str]) -> dict[str, str]:
    needed = {
        spec if isinstance(spec, str) else spec.file
        for spec in policy.hierarchies.values()
        if not hasattr(spec, "bands")
    }
    missing = sorted(name for name in needed if name not in uploaded)
    if missing:
        raise InvalidRequest(
            f"upload the hierarchy file(s) {missing} in `hierarchy_files`",
            field="hierarchy_files",
            code="missing_hierarchy_file",
        )
    return {name: uploaded[name] for name in sorted(needed)}


def create(
    session: Session,
    store: EncryptedStore,
    name: str,
    description: str | None,
    policy: DatasetPolicy,
    filename: str | None,
    content: bytes,
    uploaded_hierarchies: dict[str, str],
) -> Dataset:
    """Check the file against its policy, store it encrypted and record what it holds."""
    if session.scalars(select(Dataset.id).where(Dataset.name == name)).first():
        raise Conflict(f"a dataset named {name!r} exists", field="name", code="duplicate")
    files = _hierarchy_files(policy, uploaded_hierarchies)
    file_format = detect_format(filename, content)
    frame = read_table(content, file_format)
    columns = check_table(frame, policy, files)
    dataset = Dataset(
        id=uuid.uuid4(),
        name=name,
        description=description,
        spec=policy.dataset.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        hierarchies=json.loads(policy.model_dump_json(include={"hierarchies"}))["hierarchies"],
        hierarchy_files=files,
        file_format=file_format,
        size_bytes=len(content),
        row_count=len(frame),
        columns=columns,
        fingerprint="sha256:" + hashlib.sha256(content).hexdigest(),
        key_id=None,
        wrapped_key=None,
    )
    key = store.write(KIND, str(dataset.id), content)
    dataset.key_id, dataset.wrapped_key = key.key_id, key.wrapped
    session.add(dataset)
    session.flush()
    return dataset


def list_all(session: Session) -> list[Dataset]:
    return list(
        session.scalars(
            select(Dataset).where(Dataset.deleted_at.is_(None)).order_by(Dataset.created_at)
        )
    )


def get(session: Session, dataset_id: uuid.UUID, field: str = "dataset_id") -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.deleted_at is not None:
        raise NotFound(f"no dataset {dataset_id}", field=field)
    return dataset


def delete(session: Session, dataset_id: uuid.UUID) -> None:
    """Forget the data key (the file can no longer be read); the record stays for the
    agreements that named it."""
    dataset = get(session, dataset_id)
    live = session.scalars(
        select(Agreement.id).where(
            Agreement.dataset_id == dataset.id, Agreement.status.in_(LIVE_STATUSES)
        )
    ).first()
    if live is not None:
        raise Conflict(
            f"agreement {live} on this dataset is active or suspended; revoke it first",
            field="dataset_id",
            code="dataset_in_use",
        )
    dataset.deleted_at = utcnow()
    dataset.key_id, dataset.wrapped_key = None, None
    session.flush()


def forget_file(store: EncryptedStore, dataset_id: uuid.UUID) -> None:
    store.delete(KIND, str(dataset_id))


def read_content(store: EncryptedStore, dataset: Dataset) -> bytes:
    """The decrypted file of a dataset."""
    assert dataset.key_id is not None and dataset.wrapped_key is not None
    return store.read(KIND, str(dataset.id), WrappedKey(dataset.key_id, dataset.wrapped_key))


def rewrap_all(session: Session, store: EncryptedStore) -> int:
    """Wrap every dataset's data key with the newest service key; the number re-wrapped."""
    datasets = session.scalars(select(Dataset).where(Dataset.wrapped_key.is_not(None))).all()
    for dataset in datasets:
        key = store.rewrap(
            KIND, str(dataset.id), WrappedKey(dataset.key_id or "", dataset.wrapped_key or b"")
        )
        dataset.key_id, dataset.wrapped_key = key.key_id, key.wrapped
    session.flush()
    return len(datasets)
