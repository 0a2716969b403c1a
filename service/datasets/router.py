"""``/datasets``: administrators register, list and delete sensitive datasets."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from anonymization.errors import InvalidRequest
from policies.text import Name
from service.auth.deps import AdminCaller
from service.datasets import service
from service.datasets.schemas import (
    NAME_DESCRIPTION,
    POLICY_EXAMPLE,
    DatasetFromSql,
    DatasetOut,
)
from service.datasets.snapshots import read_sql_table
from service.deps import SessionDep, StoreDep

router = APIRouter(prefix="/datasets", tags=["datasets"])

PolicyField = Annotated[
    str,
    Form(
        description="JSON: the policy's `dataset` block and the custom `hierarchies` it uses",
        examples=[json.dumps(POLICY_EXAMPLE)],
    ),
]


async def _text_files(files: list[UploadFile]) -> dict[str, str]:
    texts = {}
    for upload in files:
        try:
            texts[upload.filename or ""] = (await upload.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"hierarchy file {upload.filename!r} is not UTF-8 text", field="hierarchy_files"
            ) from None
    return texts


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a dataset (CSV or Parquet)")
async def create_dataset(
    session: SessionDep,
    store: StoreDep,
    caller: AdminCaller,
    file: Annotated[UploadFile, File(description="the table: CSV with a header, or Parquet")],
    name: Annotated[Name, Form(description=NAME_DESCRIPTION)],
    policy: PolicyField,
    description: Annotated[str | None, Form(max_length=2000)] = None,
    hierarchy_files: Annotated[
        list[UploadFile] | None, File(description="ARX hierarchy files the policy names")
    ] = None,
) -> DatasetOut:
    content = await file.read()
    parsed = service.parse_policy(policy)
    uploaded = await _text_files(hierarchy_files or [])
    dataset = await run_in_threadpool(
        service.create,
        session,
        store,
        caller.client_id,
        name,
        description,
        parsed,
        file.filename,
        content,
        uploaded,
    )
    return DatasetOut.model_validate(dataset)


@router.post(
    "/sql",
    status_code=status.HTTP_201_CREATED,
    summary="Register a dataset from a table in a SQL database (a snapshot, stored encrypted)",
)
def create_dataset_from_sql(
    body: DatasetFromSql, session: SessionDep, store: StoreDep, caller: AdminCaller
) -> DatasetOut:
    content = read_sql_table(body.source.url, body.source.table)
    dataset = service.create(
        session,
        store,
        caller.client_id,
        body.name,
        body.description,
        body.policy,
        "table.parquet",
        content,
        body.hierarchy_files,
    )
    return DatasetOut.model_validate(dataset)


@router.get("", summary="List datasets")
def list_datasets(session: SessionDep, _: AdminCaller) -> list[DatasetOut]:
    return [DatasetOut.model_validate(dataset) for dataset in service.list_all(session)]


@router.get("/{dataset_id}", summary="One dataset")
def get_dataset(dataset_id: uuid.UUID, session: SessionDep, _: AdminCaller) -> DatasetOut:
    return DatasetOut.model_validate(service.get(session, dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset's data (refused while an agreement on it is active or suspended)",
)
def delete_dataset(
    dataset_id: uuid.UUID,
    session: SessionDep,
    store: StoreDep,
    background: BackgroundTasks,
    caller: AdminCaller,
) -> Response:
    service.delete(session, caller.client_id, dataset_id)
    # The file goes once the transaction has committed (background tasks run after it).
    background.add_task(service.forget_file, store, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
