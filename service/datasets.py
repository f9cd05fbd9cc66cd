"""Dataset storage: uploads are parsed once (pyarrow, off the event loop), checked, and stored as
Parquet bytes in the database, so that a worker on another machine reads them without a shared
disk."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import BadUpload, Conflict, NotFound, UploadTooLarge
from .models import Dataset, Job
from .paging import newest_first
from .settings import Settings

PARQUET_MAGIC = b"PAR1"


def _friendly_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_temporal(arrow_type):
        return "datetime"
    if pa.types.is_null(arrow_type):
        return "empty"
    return "string"


def _read(source: BinaryIO, filename: str) -> pa.Table:
    head = source.read(4)
    source.seek(0)
    try:
        if head == PARQUET_MAGIC or filename.lower().endswith((".parquet", ".pq")):
            return pq.read_table(source)
        return pacsv.read_csv(source, read_options=pacsv.ReadOptions(block_size=16 << 20))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0][:300]
        raise BadUpload(f"cannot read {filename!r} as a CSV or Parquet table: {message}") from exc


def _check(table: pa.Table, settings: Settings) -> None:
    names = table.column_names
    if not names:
        raise BadUpload("the table has no columns")
    if table.num_rows == 0:
        raise BadUpload("the table has a header but no rows")
    empty = [i for i, n in enumerate(names) if not str(n).strip()]
    if empty:
        raise BadUpload(f"columns at positions {empty[:10]} have no name")
    seen: set[str] = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        raise BadUpload(f"duplicate column names: {duplicates[:10]}")
    if table.num_columns > settings.max_columns:
        raise BadUpload(f"{table.num_columns} columns; at most {settings.max_columns} are accepted")
    if table.num_rows > settings.max_rows:
        raise BadUpload(f"{table.num_rows} rows; at most {settings.max_rows} are accepted")


def ingest(session: Session, source: BinaryIO, filename: str, settings: Settings) -> Dataset:
    """Parse, check and store an uploaded file; returns the new dataset (committed)."""
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: source.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
        if size > settings.max_upload_bytes:
            raise UploadTooLarge(f"the upload exceeds {settings.max_upload_bytes} bytes")
    if size == 0:
        raise BadUpload("the file is empty")
    source.seek(0)
    table = _read(source, filename)
    _check(table, settings)
    rows = table.num_rows
    columns = [{"name": f.name, "type": _friendly_type(f.type)} for f in table.schema]
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    del table  # memory: the Arrow table goes before the database write
    dataset = Dataset(
        id=str(uuid.uuid4()), filename=Path(filename).name[:255] or "upload", rows=rows,
        columns=columns, sha256=digest.hexdigest(), size_bytes=size,
        content=buffer.getbuffer(),  # a view, not a copy of the Parquet bytes
    )
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(session: Session, limit: int, after: str | None) -> list[Dataset]:
    return newest_first(session, Dataset, limit, after)


def delete_dataset(session: Session, dataset_id: str) -> None:
    dataset = get_dataset(session, dataset_id)
    unfinished = session.scalars(
        select(Job).where(Job.state.in_(("QUEUED", "RUNNING", "CANCELLING"))))
    users = [job.id for job in unfinished if dataset_id in _dataset_ids(job.spec)]
    if users:
        raise Conflict(f"dataset {dataset_id!r} is used by unfinished jobs {users[:5]}")
    session.delete(dataset)
    session.commit()


def _dataset_ids(spec: dict) -> set[str]:
    ids = {spec.get("dataset_id")}
    ids.add((spec.get("validation") or {}).get("dataset_id"))
    ids.add((spec.get("test") or {}).get("dataset_id"))
    return {i for i in ids if i}


def load_frame(session: Session, dataset_id: str) -> pd.DataFrame:
    """The stored table as a DataFrame (types as uploaded)."""
    content = session.scalar(select(Dataset.content).where(Dataset.id == dataset_id))
    if content is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return pq.read_table(io.BytesIO(content)).to_pandas()
