"""Datasets: register (check, encrypt, record), list, get, delete, re-wrap keys. Admins only."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import PurePath

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anonymization.errors import InvalidRequest, invalid_field
from anonymization.hierarchies import Hierarchy
from policies.models import BandSpec
from policies.text import name_key
from service.agreements.models import LIVE_STATUSES, Agreement
from service.audit import service as audit
from service.datasets.models import Dataset
from service.datasets.reading import (
    cardinalities,
    check_stored_types,
    check_table,
    detect_format,
    read_table,
    resolve_hierarchies,
)
from service.datasets.schemas import DatasetPolicy
from service.db import undo_on_rollback, utcnow
from service.errors import Conflict, NotFound, duplicate_name
from service.storage import EncryptedStore, WrappedKey

KIND = "datasets"
# The noise secret is wrapped bound to its own kind, so it can never pass for the data key.
NOISE = "dataset-noise"


def parse_policy(text: str) -> DatasetPolicy:
    """The ``policy`` form field: JSON with the ``dataset`` block and optional ``hierarchies``."""
    try:
        return DatasetPolicy.model_validate_json(text)
    except ValidationError as error:
        if error.errors()[0]["type"] == "json_invalid":
            raise InvalidRequest(
                f"not valid JSON: {error.errors()[0]['msg']}", field="policy"
            ) from None
        raise invalid_field(error, default="policy") from None


def _hierarchy_files(policy: DatasetPolicy, uploaded: dict[str, str]) -> dict[str, str]:
    """The text of every ARX file the policy names, matched to uploads by file name."""
    needed = {
        spec if isinstance(spec, str) else spec.file
        for spec in policy.hierarchies.values()
        if not isinstance(spec, BandSpec)
    }
    missing = sorted(name for name in needed if PurePath(name).name not in uploaded)
    if missing:
        raise InvalidRequest(
            f"upload the hierarchy file(s) {missing} in `hierarchy_files`",
            field="hierarchy_files",
            code="missing_hierarchy_file",
        )
    return {name: uploaded[PurePath(name).name] for name in sorted(needed)}


def _claim_name(session: Session, dataset: Dataset) -> None:
    """Insert the row (without its keys yet): a concurrent upload that took the name since the
    first check makes this fail, before anything is written."""
    session.add(dataset)
    try:
        session.flush()
    except IntegrityError:
        raise duplicate_name("dataset", dataset.name) from None


def create(
    session: Session,
    store: EncryptedStore,
    actor: str,
    name: str,
    description: str | None,
    policy: DatasetPolicy,
    filename: str | None,
    content: bytes,
    uploaded_hierarchies: dict[str, str],
) -> Dataset:
    """Check the file against its policy, store it encrypted and record what it holds."""
    existing = find_by_name(session, name)
    if existing is not None:
        raise duplicate_name("dataset", existing.name)
    files = _hierarchy_files(policy, uploaded_hierarchies)
    file_format = detect_format(filename, content)
    frame = read_table(content, file_format)
    columns = check_table(frame, policy, files)
    check_stored_types(content, file_format, policy)
    dataset = Dataset(
        id=uuid.uuid4(),
        name=name,
        description=description,
        spec=policy.dataset.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        hierarchies=policy.model_dump(mode="json")["hierarchies"],
        hierarchy_files=files,
        file_format=file_format,
        size_bytes=len(content),
        row_count=len(frame),
        columns=columns,
        fingerprint="sha256:" + hashlib.sha256(content).hexdigest(),
        cardinalities=cardinalities(frame, policy, files),
        key_id=None,
        wrapped_key=None,
    )
    _claim_name(session, dataset)
    # The row holds the name before the file is written; a failure from here to the commit
    # removes the file (it holds sensitive data that no row would let anyone delete).
    undo_on_rollback(session, lambda: forget_file(store, dataset.id))
    key = store.write(KIND, str(dataset.id), content)
    dataset.key_id, dataset.wrapped_key = key.key_id, key.wrapped
    noise = store.wrap_secret(NOISE, str(dataset.id), new_noise_secret())
    dataset.noise_key_id, dataset.wrapped_noise_secret = noise.key_id, noise.wrapped
    session.flush()
    audit.append(
        session,
        actor,
        "dataset.uploaded",
        f"dataset:{dataset.id}",
        {"name": name, "fingerprint": dataset.fingerprint, "rows": dataset.row_count},
    )
    return dataset


def find_by_name(session: Session, name: str) -> Dataset | None:
    """The dataset, deleted or not, whose name reads as ``name`` does, if any."""
    return session.scalars(select(Dataset).where(Dataset.name_key == name_key(name))).first()


def list_all(session: Session) -> list[Dataset]:
    return list(
        session.scalars(
            select(Dataset).where(Dataset.deleted_at.is_(None)).order_by(Dataset.created_at)
        )
    )


def get(session: Session, dataset_id: uuid.UUID) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.deleted_at is not None:
        raise NotFound(f"no dataset {dataset_id}", field="dataset_id")
    return dataset


def lock(session: Session, dataset_id: uuid.UUID) -> None:
    """Take the dataset row's write lock, held until commit, before reading whether it is
    deleted or in use: an agreement made on it and its deletion then queue behind each other,
    so neither decides on what the other has not committed yet (both would pass, leaving a
    live agreement on forgotten data). The update changes nothing; it locks the row on
    PostgreSQL and the database on SQLite."""
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values(deleted_at=Dataset.deleted_at)
        .execution_options(synchronize_session=False)
    )


def delete(session: Session, actor: str, dataset_id: uuid.UUID) -> None:
    """Forget the data key (the file can no longer be read); the record stays for the
    agreements that named it."""
    lock(session, dataset_id)
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
    dataset.noise_key_id, dataset.wrapped_noise_secret = None, None
    session.flush()
    audit.append(session, actor, "dataset.deleted", f"dataset:{dataset.id}", {"name": dataset.name})


def policy_of(dataset: Dataset) -> DatasetPolicy:
    """The dataset block and custom hierarchies the dataset was registered with."""
    return DatasetPolicy.model_validate(
        {"dataset": dataset.spec, "hierarchies": dataset.hierarchies}
    )


def hierarchies_of(dataset: Dataset) -> dict[str, Hierarchy]:
    """Every column's hierarchy, custom files included."""
    return resolve_hierarchies(policy_of(dataset), dataset.hierarchy_files)


def forget_file(store: EncryptedStore, dataset_id: uuid.UUID) -> None:
    store.delete(KIND, str(dataset_id))


def _wrapped_key(dataset: Dataset) -> WrappedKey:
    assert dataset.key_id is not None and dataset.wrapped_key is not None, "dataset deleted"
    return WrappedKey(dataset.key_id, dataset.wrapped_key)


def read_content(store: EncryptedStore, dataset: Dataset) -> bytes:
    """The decrypted file of a dataset."""
    return store.read(KIND, str(dataset.id), _wrapped_key(dataset))


def new_noise_secret() -> bytes:
    """A fresh noise secret (256 random bits)."""
    return secrets.token_bytes(32)


def noise_secret(session: Session, store: EncryptedStore, dataset_id: uuid.UUID) -> bytes:
    """The dataset's noise secret, created on first use for a dataset registered before noise
    existed: a conditional update, so two jobs racing to create it end up with the same one."""
    dataset = get(session, dataset_id)
    if dataset.wrapped_noise_secret is None:
        key = store.wrap_secret(NOISE, str(dataset.id), new_noise_secret())
        session.execute(
            update(Dataset)
            .where(Dataset.id == dataset.id, Dataset.wrapped_noise_secret.is_(None))
            .values(noise_key_id=key.key_id, wrapped_noise_secret=key.wrapped)
            .execution_options(synchronize_session=False)
        )
        session.refresh(dataset)
    assert dataset.noise_key_id is not None and dataset.wrapped_noise_secret is not None
    wrapped = WrappedKey(dataset.noise_key_id, dataset.wrapped_noise_secret)
    return store.unwrap_secret(NOISE, str(dataset.id), wrapped)


def rewrap_all(session: Session, store: EncryptedStore) -> int:
    """Wrap every dataset's data key (and noise secret) with the newest service key; the number
    of datasets re-wrapped."""
    datasets = session.scalars(select(Dataset).where(Dataset.wrapped_key.is_not(None))).all()
    for dataset in datasets:
        key = store.rewrap(KIND, str(dataset.id), _wrapped_key(dataset))
        dataset.key_id, dataset.wrapped_key = key.key_id, key.wrapped
        if dataset.noise_key_id is not None and dataset.wrapped_noise_secret is not None:
            old = WrappedKey(dataset.noise_key_id, dataset.wrapped_noise_secret)
            noise = store.rewrap(NOISE, str(dataset.id), old)
            dataset.noise_key_id, dataset.wrapped_noise_secret = noise.key_id, noise.wrapped
    session.flush()
    return len(datasets)
