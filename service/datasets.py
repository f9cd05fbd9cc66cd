"""Dataset storage: uploads are parsed once (pyarrow, off the event loop), checked, and stored as
Arrow IPC bytes in the database, so that a worker on another machine reads them without a shared
disk."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dvrl_core.io import repeated_names

from . import idempotency, tabular
from .errors import BadUpload, Conflict, NotFound, UploadTooLarge
from .models import Dataset, DatasetPart, Job
from .paging import newest_first
from .settings import Settings

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


def _check_schema(schema: pa.Schema, settings: Settings) -> None:
    names = schema.names
    if not names:
        raise BadUpload("the table has no columns")
    empty = [i + 1 for i, n in enumerate(names) if not str(n).strip()]
    if empty:
        # a spreadsheet's export leaves delimiters at the end of every line: columns at the end
        last = empty == list(range(len(names) - len(empty) + 1, len(names) + 1))
        why = (": delimiters at the end of the header line, as a spreadsheet's export leaves "
               "them? Delete them, or name the columns") if last else "; name them"
        raise BadUpload(f"column{'s' if len(empty) > 1 else ''} {empty[:10]} (counting from 1) "
                        f"{'have' if len(empty) > 1 else 'has'} no name{why}")
    duplicates = repeated_names(names)
    if duplicates:
        raise BadUpload(f"duplicate column names: {duplicates[:10]}")
    if len(names) > settings.max_columns:
        raise BadUpload(f"{len(names)} columns; at most {settings.max_columns} are accepted")


def _limits(settings: Settings) -> Callable[[pa.Schema, int], None]:
    def check(schema: pa.Schema, rows: int) -> None:
        if rows == 0:
            _check_schema(schema, settings)
        elif rows > settings.max_rows:
            raise BadUpload(f"more than {settings.max_rows} rows; at most "
                            f"{settings.max_rows} are accepted")
        elif rows * len(schema) > settings.max_cells:
            raise BadUpload(f"more than {settings.max_cells} cells (rows x columns); at most "
                            f"{settings.max_cells} are accepted")
    return check


def _table_limits(settings: Settings) -> tabular.Limits:
    """The limits tabular checks before decoding (a Parquet footer, a CSV header) and while
    decoding (the decoded size)."""
    return tabular.Limits(rows=settings.max_rows, columns=settings.max_columns,
                          cells=settings.max_cells, decoded_bytes=settings.max_decoded_bytes)


def _to_arrow(source: BinaryIO, filename: str, target: BinaryIO,
              settings: Settings) -> tabular.Summary:
    try:
        summary = tabular.convert(source, filename, target, _limits(settings),
                                  limits=_table_limits(settings))
    except tabular.LimitExceeded as exc:
        raise BadUpload(str(exc)) from exc
    except tabular.TableError as exc:
        raise BadUpload(f"cannot read {filename!r} as a CSV or Parquet table: {exc}") from exc
    if summary.rows == 0:
        raise BadUpload("the table has a header but no rows")
    return summary


def ingest(session: Session, source: BinaryIO, filename: str, settings: Settings, owner: str,
           idempotency_key: str | None = None) -> Dataset:
    """Parse, check and store an uploaded file; returns the new dataset (committed), or the one
    an earlier upload with the same ``idempotency_key`` and the same file made.

    The table is converted to an Arrow IPC stream a slice at a time on disk (service.tabular)
    and stored in parts of ``PART_BYTES``, so memory stays far below the file's size whatever
    its size."""
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: source.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
        if size > settings.max_upload_bytes:
            raise UploadTooLarge(f"the upload exceeds {settings.max_upload_bytes} bytes")
    if size == 0:
        raise BadUpload("the file is empty")
    name = Path(filename.replace("\\", "/")).name[:255] or "upload"
    request = idempotency.request_hash(digest.hexdigest(), name)
    if idempotency_key is not None:
        earlier = idempotency.find(session, owner, "create_dataset", idempotency_key, request)
        if earlier is not None:
            return idempotency.made_earlier(lambda: get_dataset(session, earlier, owner),
                                            "dataset", earlier, "upload it again")
    source.seek(0)
    with tempfile.TemporaryFile() as stored:
        summary = _to_arrow(source, filename, stored, settings)
        rows, schema = summary.rows, summary.schema
        dataset = Dataset(
            id=str(uuid.uuid4()), owner=owner, filename=name, rows=rows,
            columns=[{"name": f.name, "type": _friendly_type(f.type)} for f in schema],
            sha256=digest.hexdigest(), size_bytes=size, content=None,
        )
        session.add(dataset)
        session.flush()
        stored.seek(0)
        for part, chunk in enumerate(iter(lambda: stored.read(PART_BYTES), b"")):
            session.execute(insert(DatasetPart).values(dataset_id=dataset.id, part=part,
                                                       content=chunk))
        if idempotency_key is not None:
            idempotency.remember(session, owner, "create_dataset", idempotency_key, request,
                                 dataset.id)
    try:
        session.commit()
    except IntegrityError:  # a concurrent upload with the same key won: answer with its dataset
        session.rollback()
        if idempotency_key is None:
            raise
        earlier = idempotency.find(session, owner, "create_dataset", idempotency_key, request)
        if earlier is None:
            raise
        return get_dataset(session, earlier, owner)
    return dataset


def get_dataset(session: Session, dataset_id: str, owner: str | None = None) -> Dataset:
    """The dataset; another owner's dataset is not found (``owner`` None: any owner)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (owner is not None and dataset.owner != owner):
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(session: Session, owner: str, limit: int, after: str | None,
                  sha256: str | None = None) -> list[Dataset]:
    """``sha256``: only the datasets uploaded from a file with that digest (a client asks
    whether the table it is about to send is here already)."""
    conditions = [] if sha256 is None else [Dataset.sha256 == sha256]
    return newest_first(session, Dataset, limit, after, owner, *conditions)


def delete_dataset(session: Session, dataset_id: str, owner: str) -> None:
    dataset = get_dataset(session, dataset_id, owner)
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
    return tabular.read(content).to_pandas(self_destruct=True)
