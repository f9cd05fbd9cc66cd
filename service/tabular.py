"""Uploaded files to an Arrow IPC stream, a slice at a time, in bounded memory.

CSV (comma-separated, or ';', tab or '|' when the header shows that, with a decimal comma where
its first rows show one, column names without surrounding spaces: ``dvrl_core.io``, as
``dvrl value`` reads files) is cut into slices of
``SLICE_BYTES`` at row boundaries (never inside a quoted field) and each slice is parsed by
pyarrow's multi-threaded reader with the column types fixed by the slices before it. When a
later slice holds a wider value (``2.5`` after integers, text after numbers, a value in a column
that was empty so far) the column is widened and the file is read again, so the result is the
same as reading the whole file at once, in a fraction of the memory. A header with more columns
than the limit is refused before it is parsed.

A Parquet file is judged by its footer and page headers before any of its data is decoded, then
decoded in batches of bounded size: see ``service.parquet_upload``.

The output is an LZ4-compressed Arrow IPC stream: cheap to write and to read back (LZ4 is fast,
and there is nothing to decode).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from dvrl_core.io import (
    HEAD_BYTES,
    PARQUET_SUFFIXES,
    CsvDialect,
    clean_names,
    encoding_problem,
    other_format,
    row_boundary,
    sniff_decimal_point,
    sniff_delimiter,
    spacing_clash,
    zero_padded,
)

from .parquet_upload import PARQUET_MAGIC, open_parquet
from .table_limits import Budget, LimitExceeded, Limits, TableError

__all__ = ["LimitExceeded", "Limits", "Summary", "TableError", "convert", "csv_slices",
           "header_columns", "is_parquet", "read"]

SLICE_BYTES = 4 << 20
MAX_ROW_BYTES = 64 << 20  # one CSV line
QUOTE = ord('"')


@dataclass(frozen=True)
class Summary:
    rows: int
    schema: pa.Schema




def is_parquet(head: bytes, filename: str) -> bool:
    return head[:4] == PARQUET_MAGIC or filename.lower().endswith(PARQUET_SUFFIXES)


def csv_slices(source: BinaryIO, slice_bytes: int | None = None) -> Iterator[bytes]:
    """Consecutive pieces of a CSV stream, each ending at a row boundary.

    A newline inside a quoted field is not a row boundary: a cut is only made where the number
    of quote characters before it is even (RFC 4180 escapes a quote by doubling it)."""
    size = slice_bytes or SLICE_BYTES
    rest = b""
    while True:
        data = source.read(size)
        if not data:
            if rest:
                yield rest
            return
        buffer = rest + data if rest else data
        cut = row_boundary(buffer)
        if cut == 0:
            if len(buffer) > MAX_ROW_BYTES:
                raise TableError(f"a row longer than {MAX_ROW_BYTES >> 20} MiB, or a quote "
                                 "that is never closed")
            rest = buffer  # no complete row yet: read on
            continue
        rest = buffer[cut:]
        yield buffer[:cut] if cut < len(buffer) else buffer


def _widened(old: pa.DataType, new: pa.DataType) -> pa.DataType:
    if old == new or pa.types.is_null(new):
        return old
    if pa.types.is_null(old):
        return new
    if pa.types.is_binary(old) or pa.types.is_binary(new):  # not UTF-8: refused later
        return pa.binary()
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(old) for f in numeric) and any(f(new) for f in numeric):
        return pa.int64() if pa.types.is_integer(old) and pa.types.is_integer(new) \
            else pa.float64()
    return pa.string()


def _parse(piece: bytes, names: list[str] | None,
           types: dict[str, pa.DataType] | None, dialect: CsvDialect) -> pa.Table:
    read = pacsv.ReadOptions(column_names=names) if names else pacsv.ReadOptions()
    return pacsv.read_csv(io.BytesIO(piece), read_options=read,
                          parse_options=dialect.parse_options(),
                          convert_options=dialect.convert_options(types))


def header_columns(head: bytes, delimiter: str) -> tuple[int, bool]:
    """The number of fields in the first line of ``head`` (delimiters inside quotes do not
    count), and whether that line ends within ``head``."""
    count = 1
    mark = delimiter.encode()
    for index, part in enumerate(head.split(b'"')):
        if index % 2:  # inside quotes (a doubled quote opens and closes an empty part)
            continue
        end = part.find(b"\n")
        if end >= 0:
            return count + part.count(mark, 0, end), True
        count += part.count(mark)
    return count, False


def _refuse_wide_header(head: bytes, delimiter: str, limits: Limits) -> None:
    """Refuse a header with more columns than the limit before pyarrow parses it (it would
    build a column for each)."""
    if limits.columns is None:
        return
    count, whole = header_columns(head, delimiter)
    if count > limits.columns:
        more = "" if whole else "more than "
        raise LimitExceeded(f"{more}{count} columns; at most {limits.columns} are accepted")


def _csv_tables(source: BinaryIO, types: dict[str, pa.DataType], dialect: CsvDialect,
                limits: Limits) -> Iterator[pa.Table]:
    """Tables parsed slice by slice with ``types`` (from the first slice where missing); raises
    _Widen when a later slice holds a value wider than its column's type."""
    names: list[str] | None = None
    budget = Budget(limits.decoded_bytes)
    for piece in csv_slices(source):
        if names is None:
            _refuse_wide_header(piece, dialect.delimiter, limits)
            table = _parse(piece, None, types, dialect)
            padded = zero_padded(piece, dialect, table.schema)
            if padded:  # codes such as 007: read as written
                types.update(dict.fromkeys(padded, pa.string()))
                table = _parse(piece, None, types, dialect)
            names = table.column_names
            types.update({f.name: f.type for f in table.schema if f.name not in types})
        else:
            try:
                table = _parse(piece, names, types, dialect)
            except pa.ArrowInvalid as exc:
                if "conversion error" not in str(exc):
                    raise
                raise _Widen() from exc
        budget.spend(table.nbytes)
        yield table


class _Widen(Exception):
    pass


def _settled_types(source: BinaryIO, dialect: CsvDialect) -> dict[str, pa.DataType]:
    """Each column's type over the whole file: the widest of the types its slices suggest."""
    names: list[str] | None = None
    types: dict[str, pa.DataType] = {}
    for piece in csv_slices(source):
        schema = _parse(piece, names, None, dialect).schema
        if names is None:
            names = schema.names
            padded = zero_padded(piece, dialect, schema)
            types = {f.name: pa.string() if f.name in padded else f.type for f in schema}
        else:
            types = {f.name: _widened(types[f.name], f.type) for f in schema}
    return types


def convert(source: BinaryIO, filename: str, target: BinaryIO,
            check: Callable[[pa.Schema, int], None] = lambda schema, rows: None,
            compression: str | None = "lz4", limits: Limits | None = None) -> Summary:
    """Write ``source`` (CSV or Parquet) to ``target`` as an Arrow IPC stream.

    ``limits`` are checked before the data is decoded where the file tells enough (a Parquet
    footer, a CSV header) and while it is decoded; ``check(schema, rows_so_far)`` is called
    before the first rows and after every slice, so that limits stop a big upload early. Raises
    LimitExceeded for a table over a limit, TableError for a file that is not a readable
    table."""
    limits = limits or Limits()
    head = source.read(64)
    source.seek(0)
    unreadable = other_format(head, filename)
    if unreadable is not None:
        raise TableError(unreadable)
    other_encoding = encoding_problem(head)
    if other_encoding is not None:
        raise TableError(other_encoding)
    options = _ipc_options(compression)
    try:
        if is_parquet(head, filename):
            parquet = open_parquet(source, limits)
            return _write(target, parquet.schema, parquet.tables(), check, options)
        return _convert_csv(source, target, check, options, limits)
    except UnicodeDecodeError as exc:  # pyarrow decodes column names as UTF-8
        raise TableError(f"the file is not UTF-8 text ({exc}); save it as UTF-8") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        message = str(exc).splitlines()[0][:300]
        if "invalid UTF8" in message:
            message = f"the file is not UTF-8 text; save it as UTF-8 ({message})"
        raise TableError(message) from exc


def _ipc_options(compression: str | None) -> ipc.IpcWriteOptions:
    # one thread: compressing a batch's buffers on the thread pool costs more than it saves
    # (measured: 3x slower for a batch of 10,000 small columns, no faster for long ones)
    return ipc.IpcWriteOptions(compression=compression, use_threads=False)


def _convert_csv(source: BinaryIO, target: BinaryIO, check: Callable[[pa.Schema, int], None],
                 options: ipc.IpcWriteOptions, limits: Limits) -> Summary:
    head = source.read(HEAD_BYTES)
    source.seek(0)
    delimiter = sniff_delimiter(head)
    _refuse_wide_header(head, delimiter, limits)  # before a line of any length is gathered
    dialect = CsvDialect(delimiter, sniff_decimal_point(head, delimiter))
    try:
        return _write_csv(source, target, {}, dialect, check, options, limits)
    except _Widen:
        # a later slice holds a wider value than the first ones: settle every column's
        # type over the whole file, then write again
        source.seek(0)
        types = _settled_types(source, dialect)
        source.seek(0)
        target.seek(0)
        target.truncate()
        try:
            return _write_csv(source, target, types, dialect, check, options, limits)
        except _Widen as exc:
            raise TableError("column types differ between parts of the file") from exc


def _write_csv(source: BinaryIO, target: BinaryIO, types: dict[str, pa.DataType],
               dialect: CsvDialect, check: Callable[[pa.Schema, int], None],
               options: ipc.IpcWriteOptions, limits: Limits) -> Summary:
    tables = _csv_tables(source, types, dialect, limits)
    first = next(tables, None)
    if first is None:
        raise TableError("the file is empty")
    _require_text(first.schema)
    clash = spacing_clash(first.column_names)
    if clash:
        raise TableError(clash)
    names = clean_names(first.column_names)  # stored without the spaces around them
    if names != first.column_names:
        first = first.rename_columns(names)
        tables = (table.rename_columns(names) for table in tables)
    return _write(target, first.schema, _chain(first, tables), check, options)


def _require_text(schema: pa.Schema) -> None:
    """pyarrow reads a column with bytes that are not UTF-8 as binary: refuse it by name."""
    binary = [f.name for f in schema if pa.types.is_binary(f.type)]
    if binary:
        raise TableError(f"the file is not UTF-8 text (columns {binary[:5]}); save it as "
                         "UTF-8")


def _chain(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


def _write(target: BinaryIO, schema: pa.Schema, tables: Iterator[pa.Table],
           check: Callable[[pa.Schema, int], None], options: ipc.IpcWriteOptions) -> Summary:
    check(schema, 0)
    rows = 0
    with ipc.new_stream(target, schema, options=options) as writer:
        for table in tables:
            rows += table.num_rows
            check(schema, rows)
            writer.write_table(table)
    return Summary(rows, schema)


def read(content: bytes) -> pa.Table:
    """A stored table: an Arrow IPC stream, or Parquet (datasets stored before IPC)."""
    if content[:4] == PARQUET_MAGIC:
        return pq.read_table(pa.BufferReader(content))
    return ipc.open_stream(pa.BufferReader(content)).read_all()
