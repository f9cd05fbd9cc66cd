"""Dataset storage: uploads are parsed once (pyarrow, off the event loop), checked, and stored as
Parquet bytes in the database, so that a worker on another machine reads them without a shared
disk."""

from __future__ import annotations

import hashlib
import io
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .errors import BadUpload, Conflict, NotFound, UploadTooLarge
from .models import Dataset, DatasetPart, Job
from .paging import newest_first
from .settings import Settings

PARQUET_MAGIC = b"PAR1"
BLOCK_BYTES = 8 << 20
PART_BYTES = 8 << 20


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


def _batches(source: BinaryIO, filename: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The upload as a stream of record batches: never the whole table in memory."""
    head = source.read(4)
    source.seek(0)
    if head == PARQUET_MAGIC or filename.lower().endswith((".parquet", ".pq")):
        parquet = pq.ParquetFile(source)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=65_536)
    reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES))
    return reader.schema, iter(reader)


def _check_schema(schema: pa.Schema, settings: Settings) -> None:
    names = schema.names
    if not names:
        raise BadUpload("the table has no columns")
    empty = [i for i, n in enumerate(names) if not str(n).strip()]
    if empty:
        raise BadUpload(f"columns at positions {empty[:10]} have no name")
    seen: set[str] = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        raise BadUpload(f"duplicate column names: {duplicates[:10]}")
    if len(names) > settings.max_columns:
        raise BadUpload(f"{len(names)} columns; at most {settings.max_columns} are accepted")


def _write(target: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
           settings: Settings) -> int:
    _check_schema(schema, settings)
    rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for batch in batches:
            rows += batch.num_rows
            if rows > settings.max_rows:
                raise BadUpload(f"more than {settings.max_rows} rows; at most "
                                f"{settings.max_rows} are accepted")
            writer.write_batch(batch)
    return rows


def _to_parquet(source: BinaryIO, filename: str, target: Path,
                settings: Settings) -> tuple[int, pa.Schema]:
    """Convert the upload to a Parquet file batch by batch; returns rows and schema."""
    try:
        try:
            schema, batches = _batches(source, filename)
            rows = _write(target, schema, batches, settings)
        except pa.ArrowInvalid as exc:
            if "conversion error" not in str(exc):
                raise
            # the streaming reader fixes column types from the first block; a later value of
            # a wider type (2.5 after integers) needs the whole-file reader, which unifies them
            source.seek(0)
            table = pacsv.read_csv(source)
            schema = table.schema
            rows = _write(target, schema, iter(table.to_batches()), settings)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0][:300]
        raise BadUpload(f"cannot read {filename!r} as a CSV or Parquet table: {message}") from exc
    if rows == 0:
        raise BadUpload("the table has a header but no rows")
    return rows, schema


def ingest(session: Session, source: BinaryIO, filename: str, settings: Settings) -> Dataset:
    """Parse, check and store an uploaded file; returns the new dataset (committed).

    The table is converted to Parquet a batch at a time on disk and stored in parts of
    ``PART_BYTES``, so memory stays far below the file's size whatever its size."""
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
    with tempfile.TemporaryDirectory() as folder:
        parquet_path = Path(folder) / "table.parquet"
        rows, schema = _to_parquet(source, filename, parquet_path, settings)
        dataset = Dataset(
            id=str(uuid.uuid4()), filename=Path(filename).name[:255] or "upload", rows=rows,
            columns=[{"name": f.name, "type": _friendly_type(f.type)} for f in schema],
            sha256=digest.hexdigest(), size_bytes=size, content=None,
        )
        session.add(dataset)
        session.flush()
        with open(parquet_path, "rb") as parquet:
            for part, chunk in enumerate(iter(lambda: parquet.read(PART_BYTES), b"")):
                session.execute(insert(DatasetPart).values(dataset_id=dataset.id, part=part,
                                                           content=chunk))
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
    get_dataset(session, dataset_id)
    parts = session.scalars(select(DatasetPart.content).where(DatasetPart.dataset_id == dataset_id)
                            .order_by(DatasetPart.part))
    content = b"".join(parts) or session.scalar(
        select(Dataset.content).where(Dataset.id == dataset_id))  # datasets before parts
    table = pq.read_table(io.BytesIO(content))
    return table.to_pandas(self_destruct=True)
