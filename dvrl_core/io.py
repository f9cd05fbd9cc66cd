"""Reading and writing tables (CSV and Parquet) as pandas DataFrames.

How a CSV file is written is read from its first bytes (:func:`sniff_dialect`), as the
service's upload reads it:

- the delimiter from its header line: a comma, else the semicolon, tab or pipe that spreadsheet
  exports in many locales use;
- the decimal point of a file not separated by commas: a comma where more columns of its first
  rows read as fractional numbers with it than with a dot ("1,5" in a ';' export from a
  European locale; with a dot those columns would be read as text, and so as categories);
- column names lose the spaces around them (``a, b, label`` names ``label``, not ``" label"``).

Text must be UTF-8 (a UTF-8 byte-order mark is fine); a UTF-16 or UTF-32 file, as a
spreadsheet's "Unicode text" export writes it, is refused by name, as are a spreadsheet workbook,
a compressed file, a JSON file, XML or HTML markup and a CSV whose first line is Excel's
``sep=`` hint (:func:`other_format`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import ConfigError, UnreadableTableError

PARQUET_SUFFIXES = (".parquet", ".pq")  # anything else is read and written as CSV


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Whatever goes wrong while parsing ``path`` as a table (pyarrow's own errors, OSError,
    UnicodeDecodeError...) leaves as :class:`UnreadableTableError` naming the file."""
    if path.is_dir():
        raise UnreadableTableError(f"{path}: a directory, not a table file")
    if not path.is_file():
        raise UnreadableTableError(f"{path}: not a table file (a device, a pipe...)"
                                   if path.exists() else f"{path}: no such file")
    try:
        yield
    except UnreadableTableError:
        raise
    except UnicodeDecodeError as exc:  # pyarrow decodes column names as UTF-8
        raise UnreadableTableError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
    except Exception as exc:
        raise UnreadableTableError(f"{path}: cannot read as a table ({exc})") from exc


def repeated_names(names: Iterable[object]) -> list[str]:
    """The names that occur more than once, sorted: a table's columns, a list of features."""
    counts = Counter(str(name) for name in names)
    return sorted(name for name, count in counts.items() if count > 1)


def is_parquet(path: Path) -> bool:
    """The format by suffix: Parquet for ``.parquet``/``.pq``, CSV for anything else."""
    return path.suffix.lower() in PARQUET_SUFFIXES


DELIMITERS = (",", ";", "\t", "|")
# byte-order marks of text that is not UTF-8, longest first (UTF-32's starts as UTF-16's does)
OTHER_ENCODINGS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                   (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
HEAD_BYTES = 1 << 16  # what a CSV file's delimiter, decimal point and encoding are told from


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of a CSV file from its header line: a comma, unless the header has none
    and has semicolons, tabs or pipes (spreadsheet exports in many locales use ';')."""
    line = head.split(b"\n", 1)[0]
    counts = {d: line.count(d.encode()) for d in DELIMITERS}
    if counts[","]:
        return ","
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def encoding_problem(head: bytes) -> str | None:
    """Why text that starts with ``head`` is not UTF-8, where its byte-order mark says; None
    otherwise (bytes that are not UTF-8 further on are found while parsing)."""
    for mark, name in OTHER_ENCODINGS:
        if head.startswith(mark):
            return (f"the file is {name} text, not UTF-8; save it as UTF-8 (a spreadsheet's "
                    "'CSV UTF-8' export)")
    return None


# formats a user may well give that are not tables this library reads, by name or first bytes
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # an old Excel .xls
ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .ods: zip files
# the first bytes of compressed files: named as such, their bytes not parsed as a CSV's text
COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"),
              (b"\xfd7zXZ", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


def other_format(head: bytes, filename: str) -> str | None:
    """What a workbook, a compressed file, a JSON file, XML or HTML markup or a CSV headed by
    Excel's ``sep=`` line is, in a sentence that says what to give instead; None for anything
    else. Told from the first bytes (``head``: 64 or more), the name only where they agree: a
    Parquet or a text table keeps any name (web apps export tab-separated text as .xls)."""
    name = filename.lower()
    if head.startswith(OLE_MAGIC) or (name.endswith(WORKBOOK_SUFFIXES) and
                                      head.startswith(ZIP_MAGIC)):
        return ("the file is a spreadsheet workbook, not a table file; export the sheet as CSV "
                "(UTF-8) or Parquet")
    packed = next((kind for magic, kind in COMPRESSED if head.startswith(magic)), None)
    if packed is not None:  # read as CSV, its bytes were printed back in a parse error
        return (f"the file is {packed}-compressed; give the CSV uncompressed, or as Parquet "
                "(which compresses)")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if name.endswith(JSON_SUFFIXES) and text[:1] in (b"{", b"["):
        return "the file is JSON, not a table file; save the table as CSV or Parquet"
    if re.match(rb"(?i)<(\?xml|!doctype|html|svg|!--)", text):  # read as a column of tags
        return ("the file is XML or HTML markup (a web page, an image, an export), not a table "
                "file; save the table as CSV or Parquet")
    if re.match(rb"(?i)sep=.?\r?\n", text):  # it was a bare parse error of the second line
        return ("the file's first line is Excel's delimiter hint (sep=...), not the header; "
                "delete that line, or save the sheet as CSV UTF-8")
    return None


def refuse_other_format(path: Path) -> None:
    """Raise :class:`UnreadableTableError` for a file :func:`other_format` names, saying what to
    give instead."""
    with open(path, "rb") as file:
        unreadable = other_format(file.read(64), path.name)
    if unreadable is not None:
        raise UnreadableTableError(f"{path}: {unreadable}")


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written: the character between fields and the decimal point."""

    delimiter: str = ","
    decimal_point: str = "."

    def parse_options(self) -> pacsv.ParseOptions:
        # a quoted field may hold a newline (a free-text column exported by a spreadsheet)
        return pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)

    def convert_options(self, column_types: dict | None = None) -> pacsv.ConvertOptions:
        # an empty field is missing in text columns too (an empty label is not a class "")
        return pacsv.ConvertOptions(column_types=column_types or {}, strings_can_be_null=True,
                                    decimal_point=self.decimal_point)


def row_boundary(buffer: bytes) -> int:
    """Offset just after the last newline outside quotes in ``buffer``, 0 if there is none (a
    quoted field may hold newlines; RFC 4180 escapes a quote by doubling it)."""
    cut = buffer.rfind(b"\n") + 1
    quotes = buffer.count(b'"', 0, cut)
    while cut and quotes % 2:
        earlier = buffer.rfind(b"\n", 0, cut - 1) + 1
        quotes -= buffer.count(b'"', earlier, cut)
        cut = earlier
    return cut


def sniff_decimal_point(head: bytes, delimiter: str) -> str:
    """"," where more columns of the whole rows in ``head`` (the first :data:`HEAD_BYTES` of a
    file, or all of a shorter one) read as fractional numbers with a decimal comma than with a
    dot (never for a comma-separated file); "." otherwise."""
    if delimiter == ",":
        return "."
    rows = head if len(head) < HEAD_BYTES else head[:row_boundary(head)]
    if b"," not in rows:
        return "."

    def fractional(point: str) -> int:
        table = pacsv.read_csv(BytesIO(rows), parse_options=CsvDialect(delimiter).parse_options(),
                               convert_options=CsvDialect(delimiter, point).convert_options())
        return sum(pa.types.is_floating(field.type) for field in table.schema)

    try:
        return "," if fractional(",") > fractional(".") else "."
    except (pa.ArrowException, UnicodeDecodeError):  # a cut quote, bad bytes: read as before
        return "."


def sniff_dialect(head: bytes) -> CsvDialect:
    """The dialect of a CSV file that starts with ``head`` (module docstring)."""
    delimiter = sniff_delimiter(head)
    return CsvDialect(delimiter, sniff_decimal_point(head, delimiter))


def csv_dialect(path: Path) -> CsvDialect:
    """The dialect of the CSV file at ``path``, from its first bytes. Raises
    :class:`UnreadableTableError` for text in another encoding than UTF-8 that its first bytes
    name."""
    with open(path, "rb") as file:
        head = file.read(HEAD_BYTES)
    problem = encoding_problem(head)
    if problem is not None:
        raise UnreadableTableError(f"{path}: {problem}")
    return sniff_dialect(head)


def clean_names(names: Iterable[str]) -> list[str]:
    """A CSV header's column names without the spaces around them (``a, b, label``)."""
    return [name.strip() or name for name in names]


def spacing_clash(names: Sequence[str]) -> str | None:
    """What is wrong with a header whose names repeat only once the spaces around them are
    dropped (``age`` and `` age ``), said with the names as written; None for any other."""
    repeated = set(repeated_names(clean_names(names)))
    if not repeated or repeated_names(names):
        return None  # none, or repeated as written: said as such
    written = [repr(name) for name in names if name.strip() in repeated]
    return (f"duplicate column names once the spaces around them are dropped: "
            f"{', '.join(written[:10])}; rename one of each")


def read_table(path: str | Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    The format is taken from the suffix (``.parquet``/``.pq`` or anything else as CSV, its
    delimiter read from its header: module docstring). A CSV's ``text_columns`` are read as
    written (ids such as ``007`` keep their zeros; otherwise digits are numbers). Raises
    :class:`UnreadableTableError` with the reason when the file cannot be parsed as a table.
    A CSV column of digits where a cell of the file's first 4 MiB has leading zeros (00042) is
    text too, as the service's upload reads it.
    """
    path = Path(path)
    with reading(path):
        refuse_other_format(path)
        if is_parquet(path):
            frame = pd.read_parquet(path)
        else:
            # pyarrow's reader is several times faster than pandas' own on big files; the Arrow
            # buffers are released column by column while converting (peak memory ~1x, not 2x)
            dialect = csv_dialect(path)
            text = set(csv_raw_names(path, dialect, text_columns)) | \
                zero_padded_in_file(path, dialect)  # codes such as 007, as written
            types = dict.fromkeys(text, pa.string())
            table = pacsv.read_csv(path, parse_options=dialect.parse_options(),
                                   convert_options=dialect.convert_options(types))
            clash = spacing_clash(table.column_names)
            if clash:
                raise UnreadableTableError(f"{path}: {clash}")
            table = table.rename_columns(clean_names(table.column_names))
            binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
            if binary:  # pyarrow keeps bytes that are not UTF-8 as binary: refuse them by name
                raise UnreadableTableError(
                    f"{path}: not UTF-8 text (columns {binary[:5]}); save it as UTF-8")
            frame = table.to_pandas(self_destruct=True, split_blocks=True)
            del table
    if frame.shape[1] == 0:
        raise UnreadableTableError(f"{path}: the table has no columns")
    repeated = repeated_names(frame.columns)
    if repeated:
        raise UnreadableTableError(f"{path}: duplicate column names: {repeated[:10]}")
    return frame


# the bytes at the head of a CSV file whose cells decide that a column of digits is text (the
# service's upload decides its types on a first slice of this size)
HEAD_SLICE_BYTES = 4 << 20
ZERO_PADDED = r"^[+-]?0[0-9]"


def zero_padded(piece: bytes, dialect: CsvDialect, schema: pa.Schema | None = None) -> set[str]:
    """The integer columns of the CSV text ``piece`` (header first; ``schema``: its types where
    already parsed) where a cell is written with leading zeros (00042, a ZIP code, an account
    number): read as numbers they would lose the zeros, and 007 and 7 would be one id. Names
    as the header spells them."""
    import pyarrow.compute as pc

    if schema is None:
        schema = pacsv.read_csv(BytesIO(piece), parse_options=dialect.parse_options(),
                                convert_options=dialect.convert_options()).schema
    integers = [f.name for f in schema if pa.types.is_integer(f.type)]
    if not integers or len(set(schema.names)) < len(schema.names):  # repeats: refused later
        return set()
    options = dialect.convert_options(dict.fromkeys(integers, pa.string()))
    options.include_columns = integers
    written = pacsv.read_csv(BytesIO(piece), parse_options=dialect.parse_options(),
                             convert_options=options)
    return {name for name in integers
            if pc.any(pc.match_substring_regex(written[name], ZERO_PADDED)).as_py()}


def zero_padded_in_file(path: Path, dialect: CsvDialect) -> set[str]:
    """:func:`zero_padded` on the file's first :data:`HEAD_SLICE_BYTES`, cut at a row's end."""
    with open(path, "rb") as file:
        head = file.read(HEAD_SLICE_BYTES + 1)
    if len(head) > HEAD_SLICE_BYTES:
        head = head[:row_boundary(head[:HEAD_SLICE_BYTES])]
    return zero_padded(head, dialect) if head.strip() else set()


def csv_raw_names(path: Path, dialect: CsvDialect, names: Sequence[str]) -> list[str]:
    """The header's own spelling (spaces around them kept) of the columns ``names``, as pyarrow
    wants them for column types."""
    if not names:
        return []
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                        parse_options=dialect.parse_options(),
                        convert_options=dialect.convert_options()) as probe:
        raw = probe.schema.names
    wanted = set(names)
    return [r for r, name in zip(raw, clean_names(raw), strict=True) if name in wanted]


# formats an output path can name that write_table does not write (it would write CSV there)
OTHER_FORMATS = (".xlsx", ".xls", ".json", ".jsonl", ".tsv", ".feather", ".arrow", ".orc",
                 ".h5", ".hdf5", ".pkl", ".pickle", ".avro")


def check_writable(path: str | Path) -> None:
    """Refuse, before any work, an output path that :func:`write_table` could not write as
    asked: a suffix that names another format (it writes CSV, or Parquet for ``.parquet`` and
    ``.pq``; ``values.csv.gz`` is compressed CSV), a directory, a folder that does not exist, or
    a new file that cannot be made (tried: it is made and removed again) or an existing one
    without write permission."""
    path = Path(path)
    if path.suffix.lower() in OTHER_FORMATS:
        raise ConfigError(f"{path}: {path.suffix} is not written here; name a .csv file (.csv.gz "
                          "compressed) or a .parquet file")
    if path.is_dir():
        raise ConfigError(f"{path}: a directory; name the file to write")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: the folder {path.parent} does not exist")
    if path.exists() or path.is_symlink():  # a device or a pipe is not opened here: a FIFO's
        # reader would see EOF; a link to a file not made yet is left for the write
        if path.is_file() and not os.access(path, os.W_OK):
            raise ConfigError(f"{path}: cannot be written (permission denied)")
        return
    try:  # the folder may be read-only, or a file system no file can be made on (/sys, /proc)
        with open(path, "xb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    path.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as Parquet (``.parquet``/``.pq``) or CSV (anything else). Raises
    :class:`ConfigError` naming the file when it cannot be written (a full disk, /dev/full)."""
    path = Path(path)
    try:
        if is_parquet(path):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    except BrokenPipeError:  # --out /dev/stdout read by `head`: the callers end quietly
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
