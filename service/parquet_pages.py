"""Parquet page headers, read without the pages: what each column chunk holds once decompressed.

A Parquet footer gives each column chunk's sizes in the writer's word; the page headers are what
the reader itself goes by. ``walk`` reads every page header of a file (just enough of Thrift's
compact protocol to find a page's kind and sizes, skipping the rest) through a small window, so
that many small pages take few reads and large pages are skipped unread, and refuses a page over
``MAX_PAGE_BYTES`` once decompressed, or more than ``MAX_PAGES`` pages, before any data is
decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow.parquet as pq

from .table_limits import LimitExceeded, TableError

MAX_PAGE_BYTES = 128 << 20  # one page once decompressed (a dictionary page is held up to 4x)
MAX_PAGES = 1_000_000  # pages whose headers are read before any data (about 7 us each)
MAX_PAGE_HEADER_BYTES = 1 << 20  # writers write tens of bytes (pyarrow reads up to 16 MiB)
DICTIONARY_PAGE = 2  # PageType in parquet.thrift


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
class Chunk:
    """A column chunk as its page headers describe it."""

    pages: int
    decompressed: int  # all its pages, once decompressed
    dictionary: int  # its dictionary page, once decompressed
    largest: int  # its largest data page, once decompressed

    @property
    def resident(self) -> int:
        """What the reader holds while it reads the chunk."""
        return self.dictionary + self.largest


def _walk_chunk(pages: _PageReader, start: int, length: int, allowed: int) -> Chunk:
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
    return Chunk(count, decompressed, dictionary, largest)


def _chunk_range(column: pq.ColumnChunkMetaData) -> tuple[int, int]:
    """Where the chunk's pages lie, as the reader finds them (dictionary page first)."""
    start = column.data_page_offset
    dictionary = column.dictionary_page_offset
    if column.has_dictionary_page and dictionary is not None and 0 < dictionary < start:
        start = dictionary
    return start, column.total_compressed_size


def walk(source: BinaryIO, metadata: pq.FileMetaData) -> list[list[Chunk]]:
    """Every column chunk of every row group, from its page headers; the data is not read."""
    pages = _PageReader(source)
    chunks: list[list[Chunk]] = []
    count = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_rows <= 0:  # no rows: nothing to read (writers leave its offsets at 0)
            chunks.append([Chunk(0, 0, 0, 0)] * group.num_columns)
            continue
        chunks.append([])
        for column in range(group.num_columns):
            chunk = _walk_chunk(pages, *_chunk_range(group.column(column)), MAX_PAGES - count)
            count += chunk.pages
            chunks[-1].append(chunk)
    source.seek(0)
    return chunks
