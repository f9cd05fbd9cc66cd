"""Datasets: upload (CSV or Parquet), get, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from service import datasets
from service.db import retrying
from service.errors import BadUpload, UploadTooLarge
from service.models import Dataset

from ..deps import (
    IdempotencyKey,
    OwnerDep,
    PageSize,
    SessionDep,
    SettingsDep,
    decode_id_token,
    encode_token,
)
from ..schemas import ColumnPublic, DatasetPublic, DatasetsPublic

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def to_public(dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(id=dataset.id, filename=dataset.filename, rows=dataset.rows,
                         n_columns=len(dataset.columns),
                         columns=[ColumnPublic(**c) for c in dataset.columns],
                         sha256=dataset.sha256, size_bytes=dataset.size_bytes,
                         created_at=dataset.created_at)


@router.post("", status_code=201, response_model=DatasetPublic, operation_id="create_dataset",
             summary="Upload a table (CSV or Parquet)")
async def create_dataset(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep,
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description="the table: CSV with a header row, or Parquet")],
    idempotency_key: IdempotencyKey = None,
) -> DatasetPublic:
    files = (await request.form()).getlist("file")  # parsed once: Starlette keeps the form
    if len(files) > 1:  # all but one would be dropped unseen
        raise BadUpload(f"one table per upload: this request holds {len(files)} parts named "
                        "'file'; upload each in its own request")
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise UploadTooLarge(f"the upload is {file.size} bytes; at most "
                             f"{settings.max_upload_bytes} are accepted")

    def ingest() -> Dataset:
        file.file.seek(0)  # from the start again when a busy SQLite made it retry
        return datasets.ingest(session, file.file, file.filename or "upload", settings, owner,
                               idempotency_key)

    # parsing a big table takes seconds: off the event loop
    dataset = await run_in_threadpool(retrying, session, ingest)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return to_public(dataset)


Sha256 = Annotated[str | None, Query(
    pattern="^[0-9A-Fa-f]{64}$", description="only the datasets uploaded from a file with this "
    "SHA-256 digest (hex): whether a table is here already, without sending it again")]


@router.get("", response_model=DatasetsPublic, operation_id="list_datasets",
            summary="List datasets, newest first")
def list_datasets(session: SessionDep, owner: OwnerDep, page_size: PageSize = 50,
                  page_token: str | None = None, sha256: Sha256 = None) -> DatasetsPublic:
    after = decode_id_token(page_token, "datasets")
    items = datasets.list_datasets(session, owner, page_size + 1, after,
                                   None if sha256 is None else sha256.lower())
    more = len(items) > page_size
    items = items[:page_size]
    return DatasetsPublic(items=[to_public(d) for d in items],
                          next_page_token=encode_token("datasets", items[-1].id) if more else None)


@router.get("/{dataset_id}", response_model=DatasetPublic, operation_id="get_dataset",
            summary="Get a dataset's description")
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetPublic:
    return to_public(datasets.get_dataset(session, dataset_id, owner))


@router.delete("/{dataset_id}", status_code=204, operation_id="delete_dataset",
               summary="Delete a dataset (409 while an unfinished job uses it)")
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    retrying(session, lambda: datasets.delete_dataset(session, dataset_id, owner))
    return Response(status_code=204)
