"""``/datasets``: administrators register, list and delete sensitive datasets."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from anonymization.errors import InvalidRequest
from service.auth.deps import AdminCaller
from service.datasets import service
from service.datasets.schemas import POLICY_EXAMPLE, DatasetOut
from service.deps import SessionDep, StoreDep

router = APIRouter(prefix="/datasets", tags=["datasets"])

PolicyField = Annotated[
    str,
    Form(
        description="JSON: the policy's `dataset` block and the custom `hierarchies` it uses",
        examples=[POLICY_EXAMPLE],
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
    _: AdminCaller,
    file: Annotated[UploadFile, File(description="the table: CSV with a header, or Parquet")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
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
        service.create, session, store, name, description, parsed, file.filename, content, uploaded
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
    _: AdminCaller,
) -> Response:
    service.delete(session, dataset_id)
    # The file goes once the transaction has committed (background tasks run after it).
    background.add_task(service.forget_file, store, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
