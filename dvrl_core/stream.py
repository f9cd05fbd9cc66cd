"""Preparing tables too big to hold as DataFrames: two streaming passes over the file.

:func:`prepare_file` does what :func:`dvrl_core.data.prepare` does, for a training table given
as a path (CSV or Parquet), in memory bounded by a constant plus the encoded float32 training
matrix, which it writes into a temporary file mapped into memory (``numpy.memmap``; the file is
unlinked at once, so nothing is left behind, even by a killed process):

1. The first pass reads the target (and the id column) of every row and keeps a seeded uniform
   sample of ``sample_rows`` whole rows. The validation rows are held out exactly as
   :func:`~dvrl_core.data.prepare` holds them out; the encoder (medians, means and scales, the
   most frequent categories) is fitted on the sample's training rows.
2. The second pass encodes each batch of rows into the mapped matrix (training rows) or a small
   in-memory one (held-out validation rows).

Tables read this way are encoded from statistics of a sample, so their values may differ
slightly from those of the in-memory path on the same table; below ``sample_rows`` training
rows the two agree exactly. The validation and test tables, small by nature, are read whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .data import (
    MIN_TRAIN_ROWS,
    PreparedData,
    Split,
    TableEncoder,
    _check_other_tables,
    _check_sizes,
    _check_target_values,
    _classes,
    _encode_labels,
    _feature_columns,
    _hold_out,
    _integer_target,
    _numeric_target,
    check_unique_ids,
    infer_task,
)
from .errors import (
    ConfigError,
    SingleClassError,
    TooFewRowsError,
    UnreadableTableError,
)
from .io import (
    clean_names,
    csv_dialect,
    is_parquet,
    read_table,
    reading,
    refuse_other_format,
    repeated_names,
    spacing_clash,
    zero_padded_in_file,
)

SAMPLE_ROWS = 100_000  # rows the encoder is fitted on
# CSV bytes parsed per batch, one batch read ahead: bigger blocks or more read-ahead made
# pyarrow hold several hundred megabytes more (measured), for no gain in speed
BLOCK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 65_536
PREDICT_CHUNK = 262_144  # rows scored at a time by predict_in_chunks


def iter_frames(path: str | Path, columns: Sequence[str] | None = None,
                keep_types: Sequence[str] = (),
                text_columns: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """The table at ``path`` as DataFrames of consecutive rows (CSV or Parquet, by suffix).

    CSV column types are inferred from the first block; integer columns other than those in
    ``keep_types`` are read as floats (a later block may hold a fraction), columns empty in
    the first block and ``text_columns`` (ids: ``007`` keeps its zeros) as text. Raises
    :class:`UnreadableTableError` when the file cannot be read.
    """
    path = Path(path)
    with reading(path):
        if is_parquet(path):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS,
                                              columns=list(columns) if columns else None):
                yield batch.to_pandas()
            return
        yield from _csv_frames(path, columns, keep_types, text_columns)


def _csv_frames(path: Path, columns: Sequence[str] | None, keep_types: Sequence[str],
                text_columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    # types from the first megabyte, as pyarrow's read_csv (the in-memory path) infers them;
    # the header's names are given back without surrounding spaces (dvrl_core.io)
    dialect = csv_dialect(path)
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                        parse_options=dialect.parse_options(),
                        convert_options=dialect.convert_options()) as probe:
        schema = probe.schema
    names = clean_names(schema.names)
    raw = dict(zip(names, schema.names, strict=True))  # repeats were refused before
    padded = zero_padded_in_file(path, dialect)  # codes such as 007, as written
    types = {}
    for name, field in zip(names, schema, strict=True):
        if name in text_columns or field.name in padded:
            types[field.name] = pa.string()
        elif pa.types.is_integer(field.type) and name not in keep_types:
            types[field.name] = pa.float64()
        elif pa.types.is_null(field.type):
            types[field.name] = pa.string()
    # the dataset scanner parses blocks on every thread, in order (pyarrow's open_csv: one)
    table = ds.dataset(path, format=ds.CsvFileFormat(
        parse_options=dialect.parse_options(),
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        convert_options=dialect.convert_options(types)))
    for batch in table.to_batches(columns=[raw[name] for name in columns] if columns else None,
                                  batch_readahead=1, fragment_readahead=1,
                                  use_threads=True):
        frame = batch.to_pandas()
        frame.columns = clean_names(frame.columns)
        yield frame


def _first_columns(path: Path) -> list[str]:
    """The table's column names, from its header (CSV) or schema (Parquet)."""
    with reading(path):
        refuse_other_format(path)
        if is_parquet(path):
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        import pyarrow.csv as pacsv

        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                            parse_options=csv_dialect(path).parse_options()) as probe:
            names = probe.schema.names
        clash = spacing_clash(names)
        if clash:
            raise UnreadableTableError(f"{path}: {clash}")
        return clean_names(names)


def prepare_file(
    train: str | Path,
    target: str,
    valid: pd.DataFrame | str | Path | None = None,
    *,
    valid_fraction: float | None = None,
    test: pd.DataFrame | str | Path | None = None,
    id_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: Literal["classification", "regression", "auto"] = "auto",
    max_categories: int = 100,
    random_state: int = 0,
    sample_rows: int = SAMPLE_ROWS,
    scratch: str | Path | None = None,
) -> PreparedData:
    """:func:`~dvrl_core.data.prepare` for a training table on disk of any size (module
    docstring). ``valid`` and ``test`` are DataFrames or paths; ``scratch`` is the folder of the
    mapped training matrix (default: the system's temporary folder). The same errors as
    :func:`~dvrl_core.data.prepare`."""
    train = Path(train)
    if (valid is None) == (valid_fraction is None):
        raise ConfigError("give exactly one of a validation table or a validation fraction")
    if valid_fraction is not None and not 0.0 < valid_fraction < 1.0:
        raise ConfigError(f"the validation fraction must be between 0 and 1, not {valid_fraction}")
    columns = _first_columns(train)
    repeated = repeated_names(columns)
    if repeated:
        raise UnreadableTableError(f"{train}: duplicate column names: {repeated[:10]}")
    features = _feature_columns(pd.DataFrame(columns=columns), target, id_column,
                                feature_columns)
    kept = [target, *features] + ([id_column] if id_column else [])
    keep_types = [target] + ([id_column] if id_column else [])
    ids_as_text = [id_column] if id_column else []  # as written: 007 is not 7

    # pass 1: every row's target (and id), a seeded uniform sample of whole rows
    targets, ids, sample = [], [], _Sample(sample_rows, random_state)
    n = 0
    for frame in iter_frames(train, kept, keep_types, ids_as_text):
        targets.append(frame[target].to_numpy())
        if id_column:
            ids.append(frame[id_column].to_numpy())
        sample.add(frame[features], n)
        n += len(frame)
    if n == 0:
        raise TooFewRowsError(f"the training table has 0 rows; at least {MIN_TRAIN_ROWS} are "
                              "needed")
    target_frame = pd.DataFrame({target: _concatenate(targets)})
    del targets
    if task == "auto":
        task = infer_task(target_frame[target])
    elif task not in ("classification", "regression"):
        raise ConfigError(f"task must be classification, regression or auto, not {task!r}")
    _check_target_values(target_frame, target, "training")

    if valid is None:
        train_rows, valid_rows = _hold_out(target_frame, target, task,
                                           float(valid_fraction), random_state)  # type: ignore[arg-type]
    else:
        train_rows, valid_rows = np.arange(n), np.zeros(0, dtype=np.int64)
    valid_frame = None if valid is None else _as_frame(valid)
    test_frame = None if test is None else _as_frame(test)
    _check_other_tables([target, *features], target, valid_frame, test_frame)
    _check_sizes(len(train_rows), len(valid_rows) if valid_frame is None else len(valid_frame))

    # fitted on the sample's training rows; the sample's held-out rows too decide whether a
    # text column is numbers (as prepare decides on the whole training table)
    sampled, sampled_train = sample.frame(keep=train_rows if valid is None else None)
    encoder = TableEncoder(max_categories).fit(sampled, features, sampled_train)
    del sampled, sample
    all_targets = target_frame[target]
    train_target = all_targets.iloc[train_rows] if valid is None else all_targets
    classes = _classes(train_target, target) if task == "classification" else []

    def labels(values: pd.Series, what: str) -> np.ndarray:
        if task == "classification":
            return _encode_labels(values, classes, what)
        return _numeric_target(values, target, what)

    y_train = labels(train_target, "training")
    if valid_frame is not None:
        valid_split = Split(encoder.transform(valid_frame), labels(valid_frame[target],
                                                                    "validation"),
                            _ids(valid_frame, id_column, len(valid_frame)))
    else:
        y_valid = labels(all_targets.iloc[valid_rows], "validation")
        valid_split = Split(np.zeros((len(valid_rows), len(encoder.feature_names)), np.float32),
                            y_valid, np.arange(len(valid_rows)))
    if task == "classification" and len(np.unique(valid_split.y)) < 2:
        raise SingleClassError("the validation data has one class only; the reward needs at "
                               "least two")
    all_ids = _concatenate(ids) if id_column else np.arange(n)
    del train_target, ids
    if id_column:
        check_unique_ids(pd.Series(all_ids), id_column)

    # pass 2: encode into the mapped matrix (training rows) and the validation matrix
    x_train = _mapped_matrix((len(train_rows), len(encoder.feature_names)), scratch)
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid_rows] = True
    done_train = done_valid = 0
    start = 0
    for frame in iter_frames(train, kept, keep_types, ids_as_text):
        mask = is_valid[start:start + len(frame)]
        if not _same_targets(frame[target], all_targets.iloc[start:start + len(frame)]):
            raise UnreadableTableError(f"{train}: the table changed while it was being read")
        start += len(frame)
        if mask.any():
            rows = np.flatnonzero(mask)
            valid_split.x[done_valid:done_valid + len(rows)] = encoder.transform(frame, rows)
            done_valid += len(rows)
            frame_rows: np.ndarray | None = np.flatnonzero(~mask)
        else:
            frame_rows = None
        encoded = encoder.transform(frame, frame_rows)
        x_train[done_train:done_train + len(encoded)] = encoded
        # written rows go to the file (page cache), not this process's resident memory
        release_rows(x_train, done_train, done_train + len(encoded))
        done_train += len(encoded)
    integer_target = _integer_target(all_targets)
    del target_frame, all_targets
    if start != n or done_train != len(train_rows):
        raise UnreadableTableError(f"{train}: the table changed while it was being read")

    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # the batches' buffers, kept by the allocator
    test_split = None
    if test_frame is not None:
        test_split = Split(encoder.transform(test_frame), labels(test_frame[target], "test"),
                           _ids(test_frame, id_column, len(test_frame)))
    return PreparedData(task=task, train=Split(x_train, y_train, all_ids[train_rows]),
                        valid=valid_split, test=test_split, classes=classes,
                        feature_names=encoder.feature_names, target=target,
                        notes=encoder.notes_,
                        integer_target=task == "regression" and integer_target)


class _Sample:
    """A seeded uniform sample of at most ``size`` rows of a stream: every row draws a key in
    stream order and the rows with the smallest keys are kept (the same rows whatever the
    batch sizes)."""

    def __init__(self, size: int, random_state: int) -> None:
        self.size = size
        self.rng = np.random.default_rng([random_state, 7])
        self.parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]] = []
        self.held = 0
        self.threshold = np.inf  # the largest kept key once the sample is full

    def add(self, frame: pd.DataFrame, offset: int) -> None:
        keys = self.rng.random(len(frame))
        fresh = np.flatnonzero(keys < self.threshold)
        if len(fresh) == 0:
            return
        positions = offset + fresh
        self.parts.append((frame.iloc[fresh], keys[fresh], positions))
        self.held += len(fresh)
        if self.held > 1.5 * self.size:
            self._compact()

    def _compact(self) -> None:
        rows, keys, positions = self._joined()
        if len(keys) > self.size:
            best = np.sort(np.argpartition(keys, self.size - 1)[: self.size])
            rows, keys, positions = rows.iloc[best], keys[best], positions[best]
            self.threshold = float(keys.max())
        self.parts, self.held = [(rows, keys, positions)], len(keys)

    def _joined(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        return (pd.concat([p[0] for p in self.parts], ignore_index=True),
                np.concatenate([p[1] for p in self.parts]),
                np.concatenate([p[2] for p in self.parts]))

    def frame(self, keep: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The sampled rows in table order, and the positions in it of those among the table's
        rows ``keep`` (None: all)."""
        self._compact()
        rows, _, positions = self._joined()  # already in table order
        kept = None if keep is None else np.flatnonzero(np.isin(positions, keep))
        return rows.reset_index(drop=True), kept


def stack_rows(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top``'s rows then ``bottom``'s. A memory-mapped ``top`` (a big table) is copied a chunk at
    a time into a new mapped matrix, and each copied chunk is dropped from this process's
    memory (it stays in the file): the process never holds two copies of the table."""
    if not isinstance(top, np.memmap):
        return np.concatenate([top, bottom])
    joined = _mapped_matrix((len(top) + len(bottom), top.shape[1]), None)
    step = max(1, (64 << 20) // max(1, top.shape[1] * top.itemsize))
    for start in range(0, len(top), step):
        stop = min(start + step, len(top))
        joined[start:stop] = top[start:stop]
        release_rows(joined, start, stop)
        release_rows(top, start, stop)
    joined[len(top):] = bottom
    return joined


def predict_in_chunks(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``predict`` over ``x`` a chunk of rows at a time (its answers one row each: a number or a
    row of probabilities); float32 past one chunk (a big table's
    probabilities in float64 would cost twice the memory for digits no value needs). The rows
    of a memory-mapped ``x`` are released from resident memory as they are done."""
    if len(x) <= PREDICT_CHUNK:
        return predict(x)
    out: np.ndarray | None = None
    for start in range(0, len(x), PREDICT_CHUNK):
        stop = min(start + PREDICT_CHUNK, len(x))
        part = predict(x[start:stop])
        if out is None:
            out = np.empty((len(x), *part.shape[1:]), dtype=np.float32)  # 1-D: regression
        out[start:stop] = part
        release_rows(x, start, stop)  # a mapped table's pages, once scored, leave memory
    assert out is not None
    return out


def sample_rows(n: int, most: int, rng: np.random.Generator) -> np.ndarray:
    """Every row number below ``n``, or (past ``most`` rows) a sorted sample of ``most`` of them
    drawn with ``rng``: the rows a step of a big table's run works on."""
    if n <= most:
        return np.arange(n)
    return np.sort(rng.choice(n, most, replace=False))


def take_split(split: Split, rows: np.ndarray) -> Split:
    """The ``rows`` (sorted) of ``split``, its matrix gathered by :func:`take_rows`."""
    return Split(take_rows(split.x, rows), split.y[rows], split.ids[rows])


def take_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` for sorted ``rows``. From a mapped matrix the rows are gathered a block
    at a time and each block is released after: reading scattered rows of a mapped file maps
    their neighbours too (the kernel's fault-around), and a 2% sample of ten million rows had
    mapped the whole matrix."""
    if not isinstance(matrix, np.memmap):
        return matrix[rows]
    out = np.empty((len(rows), matrix.shape[1]), dtype=matrix.dtype)
    step = max(1, (64 << 20) // max(1, matrix.shape[1] * matrix.itemsize))
    bounds = np.searchsorted(rows, np.arange(0, len(matrix) + step, step))
    for block, (first, last) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if last > first:
            out[first:last] = matrix[rows[first:last]]
            release_rows(matrix, block * step, min((block + 1) * step, len(matrix)))
    return np.asarray(out)


def release_rows(matrix: np.ndarray, start: int = 0, stop: int | None = None) -> None:
    """Drop rows [start, stop) (default: all) of a mapped matrix from this process's resident
    memory: the file keeps them, and touching them again reads them back. Anything else than a
    mapped matrix is left as it is."""
    if stop is None:
        stop = len(matrix)
    import mmap

    handle = getattr(matrix, "_mmap", None)
    if handle is None or not hasattr(handle, "madvise"):
        return
    if not matrix.flags.c_contiguous:
        return
    row = matrix.shape[1] * matrix.itemsize
    page = mmap.PAGESIZE
    base = np.frombuffer(handle, dtype=np.uint8, count=0).ctypes.data
    offset = matrix.ctypes.data - base  # where this (perhaps sliced) matrix starts in the map
    first = (offset + start * row + page - 1) // page * page  # whole pages inside the rows
    last = (offset + stop * row) // page * page
    if last > first:
        handle.madvise(mmap.MADV_DONTNEED, first, last - first)


def _same_targets(read: pd.Series, first: pd.Series) -> bool:
    """Whether a batch's targets are those the first pass read at its rows (both passes see
    the same rows in the same order)."""
    if len(read) != len(first):
        return False
    a, b = read.to_numpy(), first.to_numpy()
    return bool(pd.Series(a).equals(pd.Series(b)) or np.array_equal(a.astype(str),
                                                                       b.astype(str)))


def _mapped_matrix(shape: tuple[int, int], scratch: str | Path | None) -> np.ndarray:
    """A float32 matrix backed by a temporary file, unlinked at once (the mapping lives on)."""
    handle, name = tempfile.mkstemp(prefix="dvrl-train-", suffix=".f32", dir=scratch)
    os.close(handle)
    try:
        if shape[0] * shape[1] == 0:
            return np.zeros(shape, dtype=np.float32)
        return np.memmap(name, dtype=np.float32, mode="w+", shape=shape)
    finally:
        os.unlink(name)


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0)
    if len({p.dtype for p in parts}) == 1:
        return np.concatenate(parts)
    return np.concatenate([p.astype(object) for p in parts])


def _as_frame(table: pd.DataFrame | str | Path) -> pd.DataFrame:
    return table if isinstance(table, pd.DataFrame) else read_table(table)


def _ids(frame: pd.DataFrame, id_column: str | None, n: int) -> np.ndarray:
    if id_column is not None and id_column in frame.columns:
        return np.array(frame[id_column].to_numpy())
    return np.arange(n)
