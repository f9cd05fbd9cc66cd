"""Uploaded files to an Arrow IPC stream, a slice at a time, in bounded memory.

CSV (comma-separated, or ';', tab or '|' when the header shows that) is cut into slices of
``SLICE_BYTES`` at row boundaries (never inside a quoted field) and each slice is parsed by
pyarrow's multi-threaded reader with the column types fixed by the slices before it. When a
later slice holds a wider value (``2.5`` after integers, text after numbers, a value in a column
that was empty so far) the column is widened and the file is read again, so the result is the
same as reading the whole file at once, in a fraction of the memory. A header with more columns
than the limit is refused before it is parsed.

A Parquet file is judged before any of its data is decoded: by its footer (the footer's own
size; flat columns only; rows, columns and cells against ``Limits``), then by its page headers,
read without the pages (no page over ``MAX_PAGE_BYTES`` once decompressed, all of them no more
than the decoded-size limit). The footer's sizes are the writer's word; the page headers are what
the reader itself goes by. The data is then decoded in batches of about ``BATCH_BYTES`` (rows
from the schema's width), text columns as dictionaries, so that each batch's decoded size is
known row by row, and counted against the limit, before its text is spelled out in slices of
about ``BATCH_BYTES``. The reader holds the current page (and dictionary) of every column it
reads, at about twice their size: a row group whose pages add up to more than ``PAGES_BYTES`` is
decoded a group of columns at a time into temporary files, then read back side by side.

The output is an LZ4-compressed Arrow IPC stream: cheap to write and to read back (LZ4 is fast,
and there is nothing to decode).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"
SLICE_BYTES = 4 << 20
MAX_ROW_BYTES = 64 << 20  # one CSV line, or one decoded row
QUOTE = ord('"')
BATCH_BYTES = 32 << 20  # decoded bytes of one Parquet batch (the reader needs about 4x)
MAX_BATCH_ROWS = 65_536
PAGES_BYTES = 128 << 20  # the largest pages of the columns read side by side (held about 2x)
MAX_PAGE_BYTES = 128 << 20  # one page once decompressed (a dictionary page is held up to 4x)
MAX_PAGES = 1_000_000  # pages whose headers are read before any data (about 7 us each)
MAX_PAGE_HEADER_BYTES = 1 << 20  # writers write tens of bytes (pyarrow reads up to 16 MiB)
MAX_FOOTER_BYTES = 32 << 20  # a Parquet footer takes about 9x its size once parsed
DICTIONARY_PAGE = 2  # PageType in parquet.thrift


class TableError(ValueError):
    """The file cannot be read as a table (the message says why)."""


class LimitExceeded(TableError):
    """The table is larger than one of the limits (the message names it)."""


@dataclass(frozen=True)
class Limits:
    """The most an uploaded table may hold; None: no limit."""

    rows: int | None = None
    columns: int | None = None
    cells: int | None = None
    decoded_bytes: int | None = None


@dataclass(frozen=True)
class Summary:
    rows: int
    schema: pa.Schema


@dataclass
class _Budget:
    """Decoded bytes written so far, against ``Limits.decoded_bytes``."""

    limit: int | None
    spent: int = 0

    def spend(self, size: int) -> None:
        self.spent += size
        if self.limit is not None and self.spent > self.limit:
            raise LimitExceeded(f"the table is more than {self.limit} bytes once decoded; at "
                                f"most {self.limit} are accepted")


def is_parquet(head: bytes, filename: str) -> bool:
    return head[:4] == PARQUET_MAGIC or filename.lower().endswith((".parquet", ".pq"))


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
        cut = _row_boundary(buffer)
        if cut == 0:
            if len(buffer) > MAX_ROW_BYTES:
                raise TableError(f"a row longer than {MAX_ROW_BYTES >> 20} MiB, or a quote "
                                 "that is never closed")
            rest = buffer  # no complete row yet: read on
            continue
        rest = buffer[cut:]
        yield buffer[:cut] if cut < len(buffer) else buffer


def _row_boundary(buffer: bytes) -> int:
    """Offset just after the last newline outside quotes, 0 if there is none."""
    cut = buffer.rfind(b"\n") + 1
    quotes = buffer.count(b'"', 0, cut)
    while cut and quotes % 2:
        earlier = buffer.rfind(b"\n", 0, cut - 1) + 1
        quotes -= buffer.count(b'"', earlier, cut)
        cut = earlier
    return cut


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


DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of a CSV file from its header line: a comma, unless the header has none
    and has semicolons, tabs or pipes (spreadsheet exports in many locales use ';')."""
    line = head.split(b"\n", 1)[0]
    counts = {d: line.count(d.encode()) for d in DELIMITERS}
    if counts[","]:
        return ","
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _parse(piece: bytes, names: list[str] | None,
           types: dict[str, pa.DataType] | None, delimiter: str = ",") -> pa.Table:
    read = pacsv.ReadOptions(column_names=names) if names else pacsv.ReadOptions()
    convert = pacsv.ConvertOptions(column_types=types) if types else pacsv.ConvertOptions()
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    return pacsv.read_csv(io.BytesIO(piece), read_options=read, parse_options=parse,
                          convert_options=convert)


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


def _csv_tables(source: BinaryIO, types: dict[str, pa.DataType], delimiter: str,
                limits: Limits) -> Iterator[pa.Table]:
    """Tables parsed slice by slice with ``types`` (from the first slice where missing); raises
    _Widen when a later slice holds a value wider than its column's type."""
    names: list[str] | None = None
    budget = _Budget(limits.decoded_bytes)
    for piece in csv_slices(source):
        if names is None:
            _refuse_wide_header(piece, delimiter, limits)
            table = _parse(piece, None, types, delimiter)
            names = table.column_names
            types.update({f.name: f.type for f in table.schema if f.name not in types})
        else:
            try:
                table = _parse(piece, names, types, delimiter)
            except pa.ArrowInvalid as exc:
                if "conversion error" not in str(exc):
                    raise
                raise _Widen() from exc
        budget.spend(table.nbytes)
        yield table


class _Widen(Exception):
    pass


def _settled_types(source: BinaryIO, delimiter: str) -> dict[str, pa.DataType]:
    """Each column's type over the whole file: the widest of the types its slices suggest."""
    names: list[str] | None = None
    types: dict[str, pa.DataType] = {}
    for piece in csv_slices(source):
        schema = _parse(piece, names, None, delimiter).schema
        if names is None:
            names = schema.names
            types = {f.name: f.type for f in schema}
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
    head = source.read(4)
    source.seek(0)
    options = _ipc_options(compression)
    try:
        if is_parquet(head, filename):
            parquet = open_parquet(source, limits)
            return _write(target, parquet.schema, parquet.tables(), check, options)
        return _convert_csv(source, target, check, options, limits)
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
    head = source.read(1 << 16)
    source.seek(0)
    delimiter = sniff_delimiter(head)
    _refuse_wide_header(head, delimiter, limits)  # before a line of any length is gathered
    try:
        return _write_csv(source, target, {}, delimiter, check, options, limits)
    except _Widen:
        # a later slice holds a wider value than the first ones: settle every column's
        # type over the whole file, then write again
        source.seek(0)
        types = _settled_types(source, delimiter)
        source.seek(0)
        target.seek(0)
        target.truncate()
        try:
            return _write_csv(source, target, types, delimiter, check, options, limits)
        except _Widen as exc:
            raise TableError("column types differ between parts of the file") from exc


def _write_csv(source: BinaryIO, target: BinaryIO, types: dict[str, pa.DataType],
               delimiter: str, check: Callable[[pa.Schema, int], None],
               options: ipc.IpcWriteOptions, limits: Limits) -> Summary:
    tables = _csv_tables(source, types, delimiter, limits)
    first = next(tables, None)
    if first is None:
        raise TableError("the file is empty")
    _require_text(first.schema)
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


# Parquet: page headers


class _Short(Exception):
    """The bytes at hand end inside the header being read."""


class _Thrift:
    """Just enough of Thrift's compact protocol to read the sizes in a Parquet page header and
    skip everything else in it."""

    def __init__(self, data: bytes | memoryview, position: int = 0) -> None:
        self.data = data
        self.position = position

    def byte(self) -> int:
        if self.position >= len(self.data):
            raise _Short()
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise TableError("a page header is corrupt (an integer too long)")

    def integer(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)  # zigzag

    def advance(self, size: int) -> None:
        if size < 0:
            raise TableError("a page header is corrupt (a negative length)")
        self.position += size
        if self.position > len(self.data):
            raise _Short()

    def fields(self) -> Iterator[tuple[int, int]]:
        """(id, type) of each field of a struct; the caller reads or skips each value."""
        last = 0
        while (head := self.byte()) != 0:
            delta = head >> 4
            last = last + delta if delta else self.integer()
            yield last, head & 0x0F

    def skip(self, kind: int, depth: int = 0, in_list: bool = False) -> None:
        if depth > 32:
            raise TableError("a page header is corrupt (nested too deeply)")
        if kind in (1, 2):  # a boolean: in a struct its value is the type; in a list, a byte
            self.advance(1 if in_list else 0)
        elif kind in (3, 7):  # byte, double
            self.advance(1 if kind == 3 else 8)
        elif kind in (4, 5, 6):  # i16, i32, i64
            self.varint()
        elif kind == 8:  # binary
            self.advance(self.varint())
        elif kind in (9, 10):  # list, set
            head = self.byte()
            size = self.varint() if head >> 4 == 15 else head >> 4
            for _ in range(size):
                self.skip(head & 0x0F, depth + 1, in_list=True)
        elif kind == 11:  # map
            size = self.varint()
            kinds = self.byte() if size else 0
            for _ in range(size):
                self.skip(kinds >> 4, depth + 1, in_list=True)
                self.skip(kinds & 0x0F, depth + 1, in_list=True)
        elif kind == 12:  # struct
            for _, field_kind in self.fields():
                self.skip(field_kind, depth + 1)
        else:
            raise TableError(f"a page header is corrupt (type {kind})")


@dataclass(frozen=True)
class _Page:
    kind: int
    header_bytes: int
    decompressed: int
    compressed: int


def _page(data: bytes | memoryview) -> _Page:
    """The page header at the start of ``data``; raises _Short if ``data`` ends inside it."""
    thrift = _Thrift(data)
    sizes = {1: 0, 2: -1, 3: -1}  # type, uncompressed_page_size, compressed_page_size
    for field_id, kind in thrift.fields():
        if field_id in sizes and kind == 5:
            sizes[field_id] = thrift.integer()
        else:
            thrift.skip(kind)
    if sizes[2] < 0 or sizes[3] < 0:
        raise TableError("a page header is corrupt (no or negative sizes)")
    return _Page(sizes[1], thrift.position, sizes[2], sizes[3])


class _PageReader:
    """Page headers read from a file through a window, so that many small pages take few reads
    and large pages are skipped without reading them."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.start = 0
        self.window = b""
        self.at_end = False

    def page(self, position: int) -> _Page:
        want = 64 << 10
        while True:
            offset = position - self.start
            if 0 <= offset < len(self.window):
                try:
                    return _page(memoryview(self.window)[offset:])
                except _Short:
                    available = len(self.window) - offset
                    if self.at_end or available >= MAX_PAGE_HEADER_BYTES:
                        raise TableError("a page header is corrupt, too large, or cut off by "
                                         "the end of the file") from None
                    want = max(want, 4 * available)
            self._fill(position, min(want, MAX_PAGE_HEADER_BYTES))

    def _fill(self, position: int, size: int) -> None:
        self.source.seek(position)
        self.start, self.window = position, self.source.read(size)
        self.at_end = len(self.window) < size
        if not self.window:
            raise TableError("a column chunk lies beyond the end of the file (it is truncated)")


@dataclass(frozen=True)
class _Chunk:
    """A column chunk as its page headers describe it."""

    pages: int
    decompressed: int  # all its pages, once decompressed
    dictionary: int  # its dictionary page, once decompressed
    largest: int  # its largest data page, once decompressed

    @property
    def resident(self) -> int:
        """What the reader holds while it reads the chunk."""
        return self.dictionary + self.largest


def _walk_chunk(pages: _PageReader, start: int, length: int, allowed: int) -> _Chunk:
    """The chunk's page headers, checked against MAX_PAGE_BYTES and ``allowed`` pages."""
    position, end = start, start + length
    count = decompressed = dictionary = largest = 0
    while position < end:
        page = pages.page(position)
        if page.decompressed > MAX_PAGE_BYTES:
            raise LimitExceeded(f"a page of {page.decompressed} bytes once decompressed; at "
                                f"most {MAX_PAGE_BYTES} are accepted (write smaller pages)")
        count += 1
        if count > allowed:
            raise LimitExceeded(f"more than {MAX_PAGES} pages; at most {MAX_PAGES} are "
                                "accepted (write larger pages)")
        decompressed += page.decompressed
        if page.kind == DICTIONARY_PAGE:
            dictionary = max(dictionary, page.decompressed)
        else:
            largest = max(largest, page.decompressed)
        position += page.header_bytes + page.compressed
    return _Chunk(count, decompressed, dictionary, largest)


def _chunk_range(column: pq.ColumnChunkMetaData) -> tuple[int, int]:
    """Where the chunk's pages lie, as the reader finds them (dictionary page first)."""
    start = column.data_page_offset
    dictionary = column.dictionary_page_offset
    if column.has_dictionary_page and dictionary is not None and 0 < dictionary < start:
        start = dictionary
    return start, column.total_compressed_size


def _walk(source: BinaryIO, metadata: pq.FileMetaData) -> list[list[_Chunk]]:
    """Every column chunk of every row group, from its page headers; the data is not read."""
    pages = _PageReader(source)
    chunks: list[list[_Chunk]] = []
    count = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        chunks.append([])
        for column in range(group.num_columns):
            chunk = _walk_chunk(pages, *_chunk_range(group.column(column)), MAX_PAGES - count)
            count += chunk.pages
            chunks[-1].append(chunk)
    source.seek(0)
    return chunks


# Parquet: checks before decoding, and bounded batches


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
    chunks: list[list[_Chunk]]

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


def _column_groups(chunks: Sequence[_Chunk]) -> list[range]:
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
    layout = _Layout(_group_rows(metadata), _walk(source, metadata))  # page headers only
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
        budget = _Budget(self.limits.decoded_bytes)
        decoder = _Decoder(self.schema, budget, BATCH_BYTES)
        run: list[int] = []  # consecutive row groups small enough to read all columns at once
        for index, chunks in enumerate(self.layout.chunks):
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
                      budget: _Budget) -> Iterator[pa.Table]:
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

    def _spool(self, index: int, group: range, budget: _Budget, slice_bytes: int,
               spool: BinaryIO) -> Iterator[pa.RecordBatch]:
        """The group's columns of row group ``index``, spelled out into ``spool`` in slices of
        ``slice_bytes`` (the slices of all groups are held at once when read back)."""
        schema = pa.schema([self.schema.field(j) for j in group])
        decoder = _Decoder(schema, budget, slice_bytes)
        # by column index: names may repeat (refused later, by the caller's check)
        batches = self.reader.reader.iter_batches(self.batch_rows, row_groups=[index],
                                                  column_indices=list(group), use_threads=False)
        with ipc.new_stream(spool, schema, options=_ipc_options("lz4")) as writer:
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

    def __init__(self, schema: pa.Schema, budget: _Budget, slice_bytes: int) -> None:
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


def read(content: bytes) -> pa.Table:
    """A stored table: an Arrow IPC stream, or Parquet (datasets stored before IPC)."""
    if content[:4] == PARQUET_MAGIC:
        return pq.read_table(pa.BufferReader(content))
    return ipc.open_stream(pa.BufferReader(content)).read_all()
