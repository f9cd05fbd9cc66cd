"""A Parquet upload, judged before any of its data is decoded, then decoded in bounded batches.

``open_parquet`` judges a file by its footer (the footer's own size; flat columns only; rows,
columns and cells against ``Limits``), then by its page headers (``service.parquet_pages``: no
page over ``MAX_PAGE_BYTES`` once decompressed, all of them no more than the decoded-size limit).
The footer's sizes are the writer's word; the page headers are what the reader itself goes by.
``ParquetUpload`` then decodes the data in batches of about ``BATCH_BYTES`` (rows from the
schema's width), text columns as dictionaries, so that each batch's decoded size is known row by
row, and counted against the limit, before its text is spelled out in slices of about
``BATCH_BYTES``. The reader holds the current page (and dictionary) of every column it reads, at
about twice their size: a row group whose pages add up to more than ``PAGES_BYTES`` is decoded a
group of columns at a time into temporary files, then read back side by side.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .parquet_pages import Chunk, walk
from .table_limits import Budget, LimitExceeded, Limits, TableError

PARQUET_MAGIC = b"PAR1"
MAX_ROW_BYTES = 64 << 20  # one decoded row
BATCH_BYTES = 32 << 20  # decoded bytes of one Parquet batch (the reader needs about 4x)
MAX_BATCH_ROWS = 65_536
PAGES_BYTES = 128 << 20  # the largest pages of the columns read side by side (held about 2x)
MAX_FOOTER_BYTES = 32 << 20  # a Parquet footer takes about 9x its size once parsed
# the spooled columns of a wide row group: written on one thread, as the output stream is
# (service.tabular: compressing a batch's buffers on the thread pool costs more than it saves)
SPOOL_OPTIONS = ipc.IpcWriteOptions(compression="lz4", use_threads=False)


NESTED = ("a table of values needs flat columns (numbers, text, dates, booleans); flatten or "
          "drop nested columns (structs, lists, maps) before uploading")


def _footer_bytes(source: BinaryIO) -> int:
    """The size the file's last bytes give its Parquet footer; 0 when they do not give one that
    fits in the file (pyarrow then says what is wrong)."""
    end = source.seek(0, io.SEEK_END)
    source.seek(max(end - 8, 0))
    tail = source.read(8)
    source.seek(0)
    size = int.from_bytes(tail[:4], "little")
    return size if tail[4:] == PARQUET_MAGIC and size <= end - 12 else 0


def _variable(arrow_type: pa.DataType) -> bool:
    """Values of the type have lengths of their own (text, bytes)."""
    return any(test(arrow_type) for test in (
        pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
        pa.types.is_large_binary, pa.types.is_string_view, pa.types.is_binary_view))


def _value_bytes(arrow_type: pa.DataType) -> float:
    """Decoded bytes of one value with its validity bit; for text and bytes, the offset only
    (their lengths are measured)."""
    if isinstance(arrow_type, pa.ExtensionType):
        arrow_type = arrow_type.storage_type
    if pa.types.is_null(arrow_type):
        return 0.0
    if _variable(arrow_type):
        return 8.125
    try:
        return arrow_type.bit_width / 8 + 0.125
    except ValueError:  # not fixed-width: nested types are refused before this is asked
        return 8.125


def _nested(arrow_type: pa.DataType) -> bool:
    if isinstance(arrow_type, pa.ExtensionType):
        arrow_type = arrow_type.storage_type
    if pa.types.is_dictionary(arrow_type):
        return _nested(arrow_type.value_type)
    return pa.types.is_nested(arrow_type) or pa.types.is_union(arrow_type)


@dataclass(frozen=True)
class _Layout:
    """A Parquet file's data as its footer and page headers describe it: the rows of each row
    group, and its column chunks."""

    rows: list[int]
    chunks: list[list[Chunk]]

    @property
    def decompressed(self) -> int:
        return sum(chunk.decompressed for group in self.chunks for chunk in group)

    def mean_value_bytes(self, column: int) -> float:
        """The largest mean size of a value of ``column`` in a row group, as stored."""
        return max((group[column].decompressed / max(rows, 1)
                    for rows, group in zip(self.rows, self.chunks, strict=True)), default=0.0)


def _refuse_shape(metadata: pq.FileMetaData, schema: pa.Schema, limits: Limits) -> None:
    """Refuse a table over the column, row or cell limits, or with nested columns."""
    columns = metadata.num_columns  # leaf columns: a struct of 10,000 fields counts 10,000
    if limits.columns is not None and columns > limits.columns:
        raise LimitExceeded(f"{columns} columns; at most {limits.columns} are accepted")
    nested = [f for f in schema if _nested(f.type)]
    if nested or columns != len(schema):
        name, kind = (nested[0].name, str(nested[0].type).split("<")[0]) if nested \
            else ("?", "nested")
        raise TableError(f"column {name!r} holds nested values ({kind}); {NESTED}")
    rows = max(metadata.num_rows, sum(_group_rows(metadata)))
    if limits.rows is not None and rows > limits.rows:
        raise LimitExceeded(f"{rows} rows; at most {limits.rows} are accepted")
    if limits.cells is not None and rows * columns > limits.cells:
        raise LimitExceeded(f"{rows * columns} cells ({rows} rows x {columns} columns); at most "
                            f"{limits.cells} cells (rows x columns) are accepted")


def _refuse_size(schema: pa.Schema, layout: _Layout, limits: Limits) -> None:
    """Refuse a table that its footer and page headers show to be too large once decompressed
    or decoded."""
    width = sum(_value_bytes(f.type) for f in schema)
    if width > MAX_ROW_BYTES:
        raise LimitExceeded(f"a row is {width:.0f} bytes once decoded; at most {MAX_ROW_BYTES} "
                            "are accepted")
    categorical = [j for j, f in enumerate(schema) if pa.types.is_dictionary(f.type)]
    dictionaries = max((sum(group[j].dictionary for j in categorical)
                        for group in layout.chunks), default=0)
    if dictionaries > PAGES_BYTES:  # kept as dictionaries: all held with every batch
        raise LimitExceeded(f"the dictionaries of categorical columns are {dictionaries} bytes "
                            f"in a row group; at most {PAGES_BYTES} are accepted")
    if limits.decoded_bytes is None:
        return
    if layout.decompressed > limits.decoded_bytes:
        raise LimitExceeded(f"the column data is {layout.decompressed} bytes once "
                            f"decompressed; at most {limits.decoded_bytes} are accepted")
    rows = sum(layout.rows)
    if rows * width > limits.decoded_bytes:
        raise LimitExceeded(f"the table is at least {rows * width:.0f} bytes once decoded "
                            f"({rows} rows of {width:.0f} bytes); at most "
                            f"{limits.decoded_bytes} are accepted")


def _row_width(schema: pa.Schema, layout: _Layout, columns: Sequence[int]) -> float:
    """The expected decoded size of a row's ``columns`` (text by its mean size as stored)."""
    width = 0.0
    for j in columns:
        arrow_type = schema.field(j).type
        width += _value_bytes(arrow_type)
        if _variable(arrow_type):
            width += 4 + layout.mean_value_bytes(j)  # read as dictionary indices first
    return max(width, 1.0)


def _batch_rows(schema: pa.Schema, layout: _Layout) -> int:
    """Rows per batch so that a batch is about BATCH_BYTES once decoded."""
    width = _row_width(schema, layout, range(len(schema)))
    return int(min(MAX_BATCH_ROWS, max(1, BATCH_BYTES // width)))


def _column_groups(chunks: Sequence[Chunk]) -> list[range]:
    """Consecutive columns whose pages held at once by the reader add up to at most
    PAGES_BYTES (or one column larger than that)."""
    groups: list[range] = []
    start, total = 0, 0
    for column, chunk in enumerate(chunks):
        if total and total + chunk.resident > PAGES_BYTES:
            groups.append(range(start, column))
            start, total = column, 0
        total += chunk.resident
    groups.append(range(start, len(chunks)))
    return groups


def _group_rows(metadata: pq.FileMetaData) -> list[int]:
    return [max(0, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)]


def open_parquet(source: BinaryIO, limits: Limits) -> ParquetUpload:
    """A Parquet upload whose footer and page headers passed ``limits``; nothing else of the
    file is read yet."""
    footer = _footer_bytes(source)
    if footer > MAX_FOOTER_BYTES:
        raise LimitExceeded(f"the file's footer (its metadata) is {footer} bytes; at most "
                            f"{MAX_FOOTER_BYTES} are accepted (write fewer, larger row groups)")
    try:
        plain = pq.ParquetFile(source, pre_buffer=False)
    except OSError as exc:
        if "nested" in str(exc):  # deeper than pyarrow's schema depth limit
            raise TableError(f"the schema is deeply nested; {NESTED}") from exc
        raise
    metadata, schema = plain.metadata, plain.schema_arrow
    _refuse_shape(metadata, schema, limits)
    layout = _Layout(_group_rows(metadata), walk(source, metadata))  # page headers only
    _refuse_size(schema, layout, limits)
    text = [f.name for f in schema if _variable(f.type)]
    # pre_buffer would read a row group's column chunks whole; a small buffer per column
    # streams them instead (the reader keeps one per column it reads)
    buffer = max(4 << 10, min(1 << 20, (PAGES_BYTES >> 4) // max(len(schema), 1)))
    reader = pq.ParquetFile(source, metadata=metadata, pre_buffer=False, buffer_size=buffer,
                            read_dictionary=text or None)
    return ParquetUpload(reader, schema, layout, _batch_rows(schema, layout), limits)


@dataclass
class ParquetUpload:
    """A Parquet file read in batches of bounded decoded size; text columns are read as
    dictionaries, measured, and spelled out a slice at a time."""

    reader: pq.ParquetFile
    schema: pa.Schema
    layout: _Layout
    batch_rows: int
    limits: Limits

    def tables(self) -> Iterator[pa.Table]:
        budget = Budget(self.limits.decoded_bytes)
        decoder = _Decoder(self.schema, budget, BATCH_BYTES)
        run: list[int] = []  # consecutive row groups small enough to read all columns at once
        for index, chunks in enumerate(self.layout.chunks):
            if not self.layout.rows[index]:  # walk skipped its pages: none is read
                continue
            groups = _column_groups(chunks)
            if len(groups) == 1:
                run.append(index)
                continue
            yield from self._read(run, decoder)
            run = []
            yield from self._read_grouped(index, groups, budget)
        yield from self._read(run, decoder)

    def _read(self, row_groups: list[int], decoder: _Decoder) -> Iterator[pa.Table]:
        if row_groups:
            # one thread: as fast or faster for batches of this size (measured)
            for batch in self.reader.iter_batches(self.batch_rows, row_groups=row_groups,
                                                  use_threads=False):
                yield from decoder.slices(batch)

    def _read_grouped(self, index: int, groups: list[range],
                      budget: Budget) -> Iterator[pa.Table]:
        """Row group ``index`` decoded a group of columns at a time into temporary files, read
        back side by side: the reader holds a decompressed page of each column it reads, and
        for a wide row group these add up to more than PAGES_BYTES."""
        with contextlib.ExitStack() as stack:
            width = _row_width(self.schema, self.layout, range(len(self.schema)))
            # twice its share of a batch: a batch of expected size is never cut, so the cuts
            # of all groups fall on the same rows
            streams = [self._spool(index, group, budget,
                                   int(2 * BATCH_BYTES * _row_width(self.schema, self.layout,
                                                                    group) / width),
                                   stack.enter_context(tempfile.TemporaryFile()))
                       for group in groups]
            for pieces in _aligned(streams):
                arrays = [column for piece in pieces for column in piece.columns]
                yield pa.Table.from_arrays(arrays, schema=self.schema)

    def _spool(self, index: int, group: range, budget: Budget, slice_bytes: int,
               spool: BinaryIO) -> Iterator[pa.RecordBatch]:
        """The group's columns of row group ``index``, spelled out into ``spool`` in slices of
        ``slice_bytes`` (the slices of all groups are held at once when read back)."""
        schema = pa.schema([self.schema.field(j) for j in group])
        decoder = _Decoder(schema, budget, slice_bytes)
        # by column index: names may repeat (refused later, by the caller's check)
        batches = self.reader.reader.iter_batches(self.batch_rows, row_groups=[index],
                                                  column_indices=list(group), use_threads=False)
        with ipc.new_stream(spool, schema, options=SPOOL_OPTIONS) as writer:
            for batch in batches:
                for table in decoder.slices(batch):
                    writer.write_table(table)
        spool.seek(0)
        return iter(ipc.open_stream(spool))


def _next_rows(stream: Iterator[pa.RecordBatch]) -> pa.RecordBatch | None:
    return next((batch for batch in stream if batch.num_rows), None)


def _aligned(streams: list[Iterator[pa.RecordBatch]]) -> Iterator[list[pa.RecordBatch]]:
    """Pieces of the same rows, one from each stream, from streams that hold the same rows in
    batches of any sizes."""
    current = [_next_rows(stream) for stream in streams]
    while True:
        pieces = [piece for piece in current if piece is not None]
        if len(pieces) < len(current):
            if pieces:
                raise TableError("the columns of a row group hold different numbers of rows")
            return
        size = min(piece.num_rows for piece in pieces)
        yield [piece.slice(0, size) for piece in pieces]
        current = [piece.slice(size) if piece.num_rows > size else _next_rows(stream)
                   for piece, stream in zip(pieces, streams, strict=True)]


class _Decoder:
    """Batches read with text as dictionaries, spelled out in slices of about ``slice_bytes``;
    the decoded size of a batch is counted against the budget before any of it is spelled
    out."""

    def __init__(self, schema: pa.Schema, budget: Budget, slice_bytes: int) -> None:
        self.schema = schema
        self.budget = budget
        self.slice_bytes = slice_bytes
        self.fixed = int(np.ceil(sum(_value_bytes(f.type) for f in schema)))
        self.text = [i for i, f in enumerate(schema) if _variable(f.type)]
        self.categorical = [i for i, f in enumerate(schema) if pa.types.is_dictionary(f.type)]
        self.dictionaries: dict[int, pa.Array] = {}

    def slices(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        sizes = self._row_bytes(batch)
        largest = int(sizes.max()) if len(sizes) else 0
        if largest > MAX_ROW_BYTES:
            raise LimitExceeded(f"a row is {largest} bytes once decoded; at most "
                                f"{MAX_ROW_BYTES} are accepted")
        self.budget.spend(int(sizes.sum()) + self._new_dictionary_bytes(batch))
        for start, stop in _cuts(sizes, self.slice_bytes):
            yield self._spelled_out(batch.slice(start, stop - start))

    def _row_bytes(self, batch: pa.RecordBatch) -> np.ndarray:
        """Each row's size once its text is spelled out."""
        sizes = np.full(batch.num_rows, self.fixed, dtype=np.int64)
        for index in self.text:
            column = batch.column(index)
            if pa.types.is_dictionary(column.type):
                lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
            else:
                lengths = pc.binary_length(column)
            sizes += lengths.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return sizes

    def _new_dictionary_bytes(self, batch: pa.RecordBatch) -> int:
        """The size of the dictionaries of columns stored as dictionaries, when they change."""
        size = 0
        for index in self.categorical:
            dictionary = batch.column(index).dictionary
            last = self.dictionaries.get(index)
            if last is None or not last.equals(dictionary):
                self.dictionaries[index] = dictionary
                size += dictionary.nbytes
        return size

    def _spelled_out(self, batch: pa.RecordBatch) -> pa.Table:
        if not self.text and batch.schema.equals(self.schema):
            return pa.Table.from_batches([batch])  # a wide batch is slow to take apart
        arrays = batch.columns
        for index in self.text:
            arrays[index] = _as_type(arrays[index], self.schema.field(index).type)
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _as_type(column: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if column.type == arrow_type:
        return column
    if pa.types.is_dictionary(column.type) and not pa.types.is_dictionary(arrow_type):
        column = column.dictionary_decode()
    return column if column.type == arrow_type else column.cast(arrow_type)


def _cuts(sizes: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive rows adding up to at most ``budget`` bytes (one row at
    least)."""
    ends = np.cumsum(sizes)
    start = 0
    while start < len(ends):
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + budget, side="right")))
        yield start, stop
        start = stop

