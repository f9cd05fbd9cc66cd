"""Turning user tables into model-ready arrays.

:func:`prepare` takes the training table (and optionally validation and test tables, or a fraction
of the training table to hold out for validation) and returns a :class:`PreparedData`: float32
feature matrices encoded by a :class:`TableEncoder` fitted on the training rows only, encoded
labels, row ids and the task.

Encoding rules: numeric columns are standardised; missing numbers are imputed with the training
median and flagged in a ``<col>__missing`` indicator column; booleans become 0/1; dates become
standardised days since the epoch; everything else is categorical and one-hot encoded over its most
frequent ``max_categories`` levels (rarer and unseen levels encode as all zeros).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import (
    ConfigError,
    ConstantTargetError,
    DataError,
    EmptyColumnError,
    MissingColumnError,
    MissingTargetError,
    SingleClassError,
    TargetTypeError,
    TooFewRowsError,
    UnseenClassError,
    require_positive_int,
)
from .io import repeated_names

Task = Literal["classification", "regression"]

MIN_TRAIN_ROWS = 10
MIN_VALID_ROWS = 5
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest target the models can hold
MAX_CLASSES_INFERRED = 20


@dataclass
class Split:
    """One part of the data: features, encoded labels and the user's row ids."""

    x: np.ndarray  # float32 [n, d]
    y: np.ndarray  # int64 class index (classification) or float64 (regression), [n]
    ids: np.ndarray  # the id column's values, else the frame's index labels (unique) or positions

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PreparedData:
    """Training, validation and (optional) test splits, encoded consistently."""

    task: Task
    train: Split
    valid: Split
    test: Split | None
    classes: list = field(default_factory=list)  # original labels; index = encoded class
    feature_names: list[str] = field(default_factory=list)
    target: str = ""
    # what reading the training table gave cause to warn of (a column of numbers but for a few
    # cells, read as categories): sentences, in a run's summary warnings
    notes: list[str] = field(default_factory=list)
    # a regression target the user wrote as integers: its labels come back as integers
    integer_target: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:  # a line in a notebook, not 17 kB of arrays
        classes = f", {self.n_classes} classes {_listed(self.classes)}" \
            if self.task == "classification" else ""
        test = "no test rows" if self.test is None else f"{len(self.test)} test rows"
        notes = f", {len(self.notes)} note{'s' if len(self.notes) != 1 else ''}" \
            if self.notes else ""
        return (f"PreparedData({self.task} of {self.target!r}{classes}: {len(self.train)} "
                f"training rows x {len(self.feature_names)} features "
                f"{_listed(self.feature_names)}, {len(self.valid)} validation rows, {test}"
                f"{notes})")

    def train_labels(self) -> np.ndarray:
        """The training rows' labels as the user gave them, in their own dtype (integer labels
        as integers, not objects); a regression's targets as numbers (integers where the user
        gave integers and they are whole numbers still: moved targets need not be)."""
        if self.task != "classification":
            y = np.asarray(self.train.y)
            if self.integer_target and np.array_equal(y, np.round(y)):
                return y.astype(np.int64)
            return y
        classes = pd.Series(self.classes, dtype=object).infer_objects()
        return classes.to_numpy()[self.train.y]

    def with_train_labels(self, y: np.ndarray) -> PreparedData:
        """A copy whose training labels are replaced (used by label-noise injection): one
        for each training row, encoded as ``train.y`` is."""
        y = np.asarray(y)
        if y.shape != (len(self.train.x),):
            raise ConfigError(f"with_train_labels takes one label for each of the "
                              f"{len(self.train.x)} training rows, not an array of shape "
                              f"{y.shape}")
        return replace(self, train=Split(self.train.x, y, self.train.ids))


def _listed(names: Sequence[Any], shown: int = 5) -> str:
    """The first few of a list, as a list's repr: ['a', 'b', ... 3 more]."""
    head = ", ".join(repr(_plain(name)) for name in names[:shown])
    return f"[{head}{f', ... {len(names) - shown} more' if len(names) > shown else ''}]"


def require_prepared(data: object, who: str) -> None:
    """TypeError or ConfigError, naming what to do, unless ``data`` is what ``prepare`` makes: a
    :class:`PreparedData` with float32 features and, for classification, labels that are class
    indices (a hand-built one failed deep in torch or NumPy)."""
    if not isinstance(data, PreparedData):
        raise TypeError(f"{who} values a PreparedData: prepare(train, target, valid=...) makes "
                        f"one from DataFrames; not a {type(data).__name__}")
    for role in ("train", "valid", "test"):
        split = getattr(data, role)
        if split is None:
            continue
        if np.asarray(split.x).dtype != np.float32:
            raise TypeError(f"data.{role}.x holds float32 features (as prepare makes them), not "
                            f"{np.asarray(split.x).dtype}: .astype(np.float32)")
        y = np.asarray(split.y)
        if y.shape != (len(split.x),):
            raise ConfigError(f"data.{role}.y holds one label for each of the {len(split.x)} "
                              f"rows of data.{role}.x, not an array of shape {y.shape}")
        if data.task == "classification" and len(y) and (
                not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or
                y.max() >= data.n_classes):
            raise ConfigError(f"data.{role}.y holds class indices 0 to {data.n_classes - 1} "
                              f"(positions in data.classes, {len(data.classes)} of them), as "
                              "prepare encodes the labels")


def standardiser(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function that moves every column to zero mean and unit variance as measured on
    ``reference`` (a constant column is only centred; one-hot columns included, as a user's
    StandardScaler would), returning float32."""
    mean = reference.mean(0, dtype=np.float64)
    scale = reference.std(0, dtype=np.float64)
    scale[scale == 0] = 1.0
    return lambda x: ((x - mean) / scale).astype(np.float32)


@dataclass
class _ColumnCode:
    name: str
    kind: Literal["numeric", "bool", "datetime", "duration", "categorical"]
    center: float = 0.0
    scale: float = 1.0
    fill: float = 0.0
    indicator: bool = False
    levels: list = field(default_factory=list)
    key: Any = None  # the column's label in the frame, where it is not the string ``name``

    @property
    def column(self) -> Any:
        return self.name if self.key is None else self.key


class TableEncoder:
    """Encodes feature columns; fitted on training rows, applied to any table with those columns."""

    def __init__(self, max_categories: int = 100) -> None:
        self.max_categories = max_categories
        self.columns_: list[_ColumnCode] = []
        self.notes_: list[str] = []  # what the fit gave cause to warn of (PreparedData.notes)

    def fit(self, frame: pd.DataFrame, columns: Sequence[str] | None = None,
            rows: np.ndarray | None = None) -> TableEncoder:
        """Learn the encoding of ``columns`` (default: all) from ``rows`` (positions; default:
        all rows). Works a column at a time: the table is never copied."""
        self.columns_, self.notes_ = [], []
        for name in frame.columns if columns is None else columns:
            series = _column(frame, name, rows)
            if series.isna().all():
                held = 0 if rows is None else int(frame[name].notna().sum())
                where = "the training table" if not held else (
                    f"the training rows: its {held} value(s) are all in the rows held out for "
                    "validation")  # which rows those are depends on the seed
                raise EmptyColumnError(f"column {name!r} has no values in {where}; drop it or "
                                       "name the feature columns to use")
            code = self._fit_column(str(name), series, frame[name])
            if not isinstance(name, str):  # pd.DataFrame(array)'s columns are 0, 1, ...
                code.key = name
            self.columns_.append(code)
        return self

    def _fit_column(self, name: str, series: pd.Series, whole: pd.Series) -> _ColumnCode:
        """``series``: the column's training rows; ``whole``: the column in the training table
        (held-out validation rows too), which decides whether text is numbers (every split of
        the table reads the column alike)."""
        if pd.api.types.is_bool_dtype(series):  # pandas' "boolean" may hold NA: missing
            return _ColumnCode(name, "bool", indicator=bool(series.isna().any()))
        if pd.api.types.is_datetime64_any_dtype(series) or _holds_dates(series):
            days = _datetime_days(series)
            return self._fit_numeric(name, "datetime", days)
        if pd.api.types.is_timedelta64_dtype(series):
            return self._fit_numeric(name, "duration", _duration_days(series))
        if pd.api.types.is_numeric_dtype(series):
            return self._fit_numeric(name, "numeric", series.astype("float64"))
        if self._holds_numbers(name, whole):
            return self._fit_numeric(name, "numeric", _text_numbers(series))
        counts = _as_text(series.dropna()).value_counts(sort=True)
        if self._spoiled_dates(name, whole) or self._written_numbers(name, whole):
            pass  # its note says what the column is: not the many-categories one
        elif len(counts) > self.max_categories:
            per_row = len(counts) >= 0.9 * int(series.notna().sum())
            self.notes_.append(
                f"column {name!r} has {len(counts)} distinct values in the training rows; its "
                f"{self.max_categories} most frequent are categories and the others read as "
                "none of them" + ("; a value per row: if it names the rows, give it as the id "
                                  "column" if per_row else ""))
        levels = sorted(counts.index[: self.max_categories].tolist())
        code = _ColumnCode(name, "categorical", levels=levels)
        code.indicator = bool(series.isna().any())
        return code

    def _holds_numbers(self, name: str, whole: pd.Series) -> bool:
        """Whether a column of objects or text is numbers: every cell a number or a missing
        marker (a CSV column with ``?`` for missing values), or numbers held as objects. Digits
        written as text and nothing else are the user's categories. Where all but a few cells
        are numbers (a decimal comma, ``n.a.``) the column stays categories, with a note."""
        present = whole.dropna()
        head = _as_text(present.iloc[:1000])  # a column of words is told by its first cells
        head = head[~_marks_missing(head)]
        if len(head) and pd.to_numeric(head, errors="coerce").isna().all():
            return False
        text = _as_text(present)
        marked = _marks_missing(text).to_numpy()
        numbers = pd.to_numeric(text[~marked], errors="coerce")
        unread = numbers.isna().to_numpy()
        if len(numbers) == 0 or unread.all():
            return False
        if not unread.any():
            return bool(marked.any()) or \
                pd.api.types.infer_dtype(present, skipna=True) != "string"
        if unread.mean() <= MOSTLY_NUMBERS:
            example = str(text[~marked][unread].iloc[0])[:40]
            self.notes_.append(
                f"column {name!r} holds numbers in all but {int(unread.sum())} of its "
                f"{len(text)} cells in the training table (such as {example!r}), so it was "
                "read as categories; if it is a number, give numbers there (a decimal point, "
                "not a comma) or leave those cells empty")
        return False

    def _written_numbers(self, name: str, whole: pd.Series) -> bool:
        """Whether a text column holds numbers written for people: currency or percent signs,
        digit grouping ("$1,200.50", "12%", "77,516"). They stay categories (whether "1,200" is
        a thousand or one and a fifth is the writer's convention), with a note saying how to
        give them as numbers (it replaces the note on many categories, which would point at the
        id column). Told by the first cells, as a column of words is."""
        text = _as_text(whole.dropna().iloc[:1000])
        text = text[~_marks_missing(text)].str.strip()
        if not len(text):
            return False
        written = pd.to_numeric(text, errors="coerce").isna()
        plain = pd.to_numeric(text.str.replace(NUMBER_DRESSING, "", regex=True), errors="coerce")
        if written.mean() <= MOSTLY_NUMBERS or plain.isna().mean() > MOSTLY_NUMBERS:
            return False
        self.notes_.append(
            f"column {name!r} holds numbers written as text (such as "
            f"{str(text[written].iloc[0])[:40]!r}), so it was read as categories; if it is a "
            "number, give plain numbers there (1200.5: a decimal point, no currency or percent "
            "signs, no thousands separators)")
        return True

    def _spoiled_dates(self, name: str, whole: pd.Series) -> bool:
        """Whether a text column holds ISO 8601 dates in all but a few cells (``unknown``, a
        date written 05/03/2020): it stays categories, with a note that says so (a CSV reads a
        column of dates as dates only where every cell is one)."""
        present = whole.dropna()
        text = _as_text(present.iloc[:1000])
        text = text[~_marks_missing(text)]
        if not len(text) or _iso_dates(text).isna().mean() > MOSTLY_NUMBERS:
            return False
        text = _as_text(present)
        text = text[~_marks_missing(text)]
        unread = _iso_dates(text).isna().to_numpy()
        if not unread.any() or unread.mean() > MOSTLY_NUMBERS:
            return False
        self.notes_.append(
            f"column {name!r} holds dates in all but {int(unread.sum())} of its {len(text)} "
            f"cells in the training table (such as {str(text[unread].iloc[0])[:40]!r}), so it "
            "was read as categories; write dates as ISO 8601 (2020-03-05) there or leave "
            "those cells empty")
        return True

    def _fit_numeric(self, name: str, kind, values: pd.Series) -> _ColumnCode:
        finite = values.replace([np.inf, -np.inf], np.nan)
        infinite = int((finite.isna() & values.notna()).sum())
        if infinite:  # read as missing, as NaN is: said, not silently
            self.notes_.append(f"column {name!r} holds {infinite} infinite value"
                               f"{'s' if infinite != 1 else ''} in the training rows; read as "
                               "missing")
        fill = float(finite.median()) if finite.notna().any() else 0.0
        filled = finite.fillna(fill).to_numpy(dtype=np.float64)
        # statistics of a rescaled copy: values near the float64 limit (1e300) would overflow
        # when squared
        magnitude = float(np.abs(filled).max()) if len(filled) else 0.0
        unit = magnitude if magnitude > 1e100 else 1.0
        center = float((filled / unit).mean() * unit)
        scale = float((filled / unit).std() * unit)
        if not np.isfinite(scale) or scale == 0.0:
            scale = 1.0
        return _ColumnCode(
            name, kind, center, scale, fill, indicator=bool(finite.isna().any())
        )

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for code in self.columns_:
            if code.kind == "categorical":
                names.extend(f"{code.name}={level}" for level in code.levels)
            else:
                names.append(code.name)
            if code.indicator:
                names.append(f"{code.name}__missing")
        return names

    def transform(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """Encode ``rows`` (positions; default all) into one float32 matrix, filled a column at a
        time."""
        n = len(frame) if rows is None else len(rows)
        out = np.zeros((n, len(self.feature_names)), dtype=np.float32)
        at = 0
        for code in self.columns_:
            series = _column(frame, code.column, rows)
            missing = series.isna().to_numpy()
            if code.kind == "categorical":
                lookup = {level: index for index, level in enumerate(code.levels)}
                codes = _as_text(series).map(lookup).where(~missing).fillna(-1)
                codes = codes.to_numpy(dtype=np.int64)
                known = codes >= 0
                out[np.flatnonzero(known), at + codes[known]] = 1.0
                at += len(code.levels)
            else:
                if code.kind == "bool":
                    values = _bools(series, code)
                elif code.kind == "datetime":
                    _refuse_plain_numbers(series, code)
                    values = _datetime_days(_text_dates(series, code)).to_numpy()
                elif code.kind == "duration":
                    _refuse_plain_numbers(series, code)
                    values = _duration_days(series).to_numpy()
                else:
                    values = _numbers(series, code)
                values = np.where(np.isfinite(values), values, np.nan)
                missing = np.isnan(values)
                values = np.where(missing, code.fill, values)
                out[:, at] = (values - code.center) / code.scale
                at += 1
            if code.indicator:
                out[:, at] = missing
                at += 1
        return out


def _column(frame: pd.DataFrame, name: str, rows: np.ndarray | None) -> pd.Series:
    series = frame[name]
    return series if rows is None else series.iloc[rows]


def _text_numbers(series: pd.Series) -> pd.Series:
    """A column of numbers held as text or objects as float64, missing markers as missing."""
    text = _as_text(series)
    return pd.to_numeric(text.where(~(_marks_missing(text) | series.isna())),
                         errors="coerce").astype("float64")


def _as_text(series: pd.Series) -> pd.Series:
    """A column's values as text, a level per distinct value. Bytes (a Parquet file's binary
    column) are decoded as UTF-8, any byte that is not written as an escape such as ``\\xff``
    (``astype(str)`` raised UnicodeDecodeError on them)."""
    first = series.first_valid_index() if series.dtype == object else None
    if first is not None and isinstance(series.loc[first], bytes):  # a binary column's cells
        series = series.map(lambda v: v.decode("utf-8", "backslashreplace")
                            if isinstance(v, bytes) else v)
    return series.astype(str)


def _holds_dates(series: pd.Series) -> bool:
    """Whether an object column holds dates (``datetime.date``: what a CSV's or a Parquet
    file's date-only column becomes), to be read as days like timestamps, not as categories."""
    if series.dtype != object:
        return False
    present = series.dropna()
    sample = present.iloc[:1000]
    return len(sample) > 0 and all(isinstance(v, datetime.date) for v in sample) and \
        all(isinstance(v, datetime.date) for v in present)


def _refuse_plain_numbers(series: pd.Series, code: _ColumnCode) -> None:
    """Numbers where the training rows held times or durations would read as nanoseconds (a
    duration of 3 as 3 ns, a date as 1970): say so instead."""
    numbers = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numbers and series.notna().any():  # a column of empty cells is missing, not numbers
        what = "dates or times" if code.kind == "datetime" else "durations"
        raise DataError(f"column {code.column!r} holds {what} in the training rows but plain "
                        f"numbers here; give {what} in every table, or numbers in every table")


# the share of a text column's cells that may be other than numbers before it is no longer
# taken for a column of numbers spoiled by a few cells (PreparedData.notes)
MOSTLY_NUMBERS = 0.05
# what people write around and inside numbers: currency and percent signs, thousands separators
NUMBER_DRESSING = r"[$€£¥%,']"
# text that marks a missing number (a CSV reader turns most of these into empty cells already)
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "--"})


def _marks_missing(text: pd.Series) -> pd.Series:
    """Which cells of a text column are missing markers, whatever their case and spaces."""
    return text.str.strip().str.lower().isin(MISSING_MARKERS)


def _numbers(series: pd.Series, code: _ColumnCode) -> np.ndarray:
    """A numeric column's values as float64. Dates, durations or text where the training rows
    held numbers would otherwise become missing values without a word: say so instead (an
    empty cell, or a missing marker such as NA or ?, stays missing)."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        kind = "dates or times" if pd.api.types.is_datetime64_any_dtype(series) else "durations"
        raise DataError(f"column {code.column!r} holds numbers in the training rows but {kind} "
                        "here; give the same kind of value in every table")
    values = _text_numbers(series)
    unread = series.notna() & values.isna() & ~_marks_missing(_as_text(series))
    _refuse_unread(series, unread.to_numpy(), code, "numbers")
    return values.to_numpy()


def _refuse_unread(series: pd.Series, unread: np.ndarray, code: _ColumnCode, kind: str) -> None:
    """DataError naming the cells of another table that are not the ``kind`` of value (numbers,
    True or False) the column's training rows held, with one of them."""
    if unread.any():
        example = series[unread].iloc[0]
        raise DataError(f"column {code.column!r} holds {kind} in the training rows, but "
                        f"{int(unread.sum())} of these rows hold something else (such as "
                        f"{str(example)[:40]!r}); give {kind}, or leave the cell empty for a "
                        "missing value")


def _bools(series: pd.Series, code: _ColumnCode) -> np.ndarray:
    """A boolean column's values as 0.0 / 1.0, NaN where missing. Where the training rows held
    True and False, another table's 0 / 1 or "true" / "false" text reads as them; anything else
    is said (it was pandas' "could not convert string to float")."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64").to_numpy()
    else:
        words = _as_text(series).str.strip().str.lower()
        values = words.map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}).astype("float64")
        values = values.where(series.notna()).to_numpy()
    _refuse_unread(series, series.notna().to_numpy() & ~np.isin(values, (0.0, 1.0)), code,
                   "True or False")
    return values


def _text_dates(series: pd.Series, code: _ColumnCode) -> pd.Series:
    """Dates written as text where the training rows held dates, read as ISO 8601 (as a CSV's
    dates are): one in another format (05/03/2020) is said by name, not read month-first for
    the first row and as missing for the rest."""
    text = series.dtype == object or pd.api.types.is_string_dtype(series)
    first = series.first_valid_index() if text else None
    if first is None or not isinstance(series.loc[first], str):
        return series
    marked = _marks_missing(series.astype(str)) | series.isna()
    dates = pd.to_datetime(series.where(~marked), errors="coerce", utc=True, format="ISO8601")
    unread = ~marked & dates.isna()
    if unread.any():
        raise DataError(f"column {code.column!r} holds dates in the training rows, but "
                        f"{int(unread.sum())} of these rows hold something else (such as "
                        f"{str(series[unread].iloc[0])[:40]!r}); write dates as ISO 8601 "
                        "(2020-03-05, as a CSV's dates are read), or leave the cell empty")
    return dates


def _iso_dates(text: pd.Series) -> pd.Series:
    """Text cells read as ISO 8601 dates or times (missing where a cell is not one); numbers
    are not dates here."""
    looks = text.str.match(r"\s*\d{4}-\d{2}-\d{2}")
    return pd.to_datetime(text.where(looks), errors="coerce", utc=True, format="ISO8601")


def _duration_days(series: pd.Series) -> pd.Series:
    return pd.to_timedelta(series, errors="coerce") / pd.Timedelta(days=1)


def _datetime_days(series: pd.Series) -> pd.Series:
    # in UTC: times with different offsets (daylight saving) in one column, naive ones as UTC
    as_ns = pd.to_datetime(series, errors="coerce", utc=True).dt.tz_localize(None)
    return (as_ns - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)


def infer_task(target: pd.Series) -> Task:
    """Classification for non-numeric, boolean or few-valued integer targets; else regression.
    Decimals (a Parquet decimal column reads as Python objects) are numbers."""
    values = target.dropna()
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "decimal":
        values = values.astype("float64")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    as_float = values.astype("float64")
    integral = bool(np.all(np.equal(np.mod(as_float, 1.0), 0.0)))
    if integral and values.nunique() <= MAX_CLASSES_INFERRED:
        return "classification"
    return "regression"


def prepare(
    train: pd.DataFrame,
    target: str,
    valid: pd.DataFrame | None = None,
    *,
    valid_fraction: float | None = None,
    test: pd.DataFrame | None = None,
    id_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: Literal["classification", "regression", "auto"] = "auto",
    max_categories: int = 100,
    random_state: int = 0,
) -> PreparedData:
    """Encode training, validation and test tables for valuation.

    Give either ``valid`` (a table from the target distribution) or ``valid_fraction`` (that
    fraction of the training rows is held out, stratified by class, and not valued). Raises a
    :class:`~dvrl_core.errors.DataError` subclass that names the problem when the data cannot be
    valued.
    """
    if (valid is None) == (valid_fraction is None):
        raise ConfigError("give exactly one of a validation table or a validation fraction")
    for role, frame in (("train", train), ("valid", valid), ("test", test)):
        if frame is not None and not isinstance(frame, pd.DataFrame):
            raise TypeError(f"prepare: {role} is a pandas DataFrame (pd.DataFrame(array) for a "
                            f"NumPy array), not {type(frame).__name__}")
        repeated = [] if frame is None else repeated_names(frame.columns)
        if repeated:  # frame[name] would be a table, not a column
            raise DataError(f"the {role} table has duplicate column names: {repeated[:10]}")
    if isinstance(feature_columns, str):
        raise ConfigError(f"feature_columns is a list of column names, not one string: "
                          f"[{feature_columns!r}]")
    require_positive_int("max_categories", max_categories)
    if isinstance(target, pd.Series | np.ndarray | list):
        raise ConfigError("target is the name of the label column of train; to value labels "
                          "held apart, add them as a column: prepare(X.assign(label=y), "
                          "'label', ...)")
    # pd.DataFrame(array)'s columns are 0, 1, ...: "3" names column 3, as feature_names say
    target = _by_name(train, target)
    if id_column is not None and id_column not in train.columns and \
            id_column in train.index.names:  # a Parquet file's pandas index: read as its index
        train = train.reset_index(level=id_column)
    id_column = None if id_column is None else _by_name(train, id_column)
    if feature_columns is not None:
        feature_columns = [_by_name(train, name) for name in feature_columns]
    features = _feature_columns(train, target, id_column, feature_columns)

    if task == "auto":
        task = infer_task(train[target])
    elif task not in ("classification", "regression"):
        raise ConfigError(f"task must be classification, regression or auto, not {task!r}")

    if id_column is not None:
        check_unique_ids(train[id_column], id_column)
    if len(train) == 0:
        raise TooFewRowsError(f"the training table has no rows; at least {MIN_TRAIN_ROWS} are "
                              "needed")
    _check_target_values(train, target, "training")
    # rows are selected by position, never copied as frames: a big table stays in memory once
    train_rows: np.ndarray | None = None
    valid_rows: np.ndarray | None = None
    valid_frame = valid
    if valid is None:
        train_rows, valid_rows = _hold_out(train, target, task, float(valid_fraction),  # type: ignore[arg-type]
                                           random_state)
        valid_frame = train
    assert valid_frame is not None
    _check_other_tables([target, *features], target, valid_frame, test)
    hint = None
    if valid_rows is not None and task == "classification" and len(valid_rows) < MIN_VALID_ROWS:
        # a hold-out stratified by class takes nothing from classes of one row: a number read
        # as classes makes every value a class
        kinds = train[target].nunique()
        if kinds > len(train) / 2:
            hint = (f" (the hold-out is stratified by class, and the target {target!r} has "
                    f"{kinds} distinct values in {len(train)} rows, most of them once: "
                    f"{_not_classes(train[target])})")
    _check_sizes(len(train) if train_rows is None else len(train_rows),
                 len(valid_frame) if valid_rows is None else len(valid_rows),
                 None if valid_fraction is None else (len(train), float(valid_fraction)), hint)

    encoder = TableEncoder(max_categories).fit(train, features, train_rows)
    train_target = _column(train, target, train_rows)
    valid_target = _column(valid_frame, target, valid_rows)
    classes: list = []
    if task == "classification":
        classes = _classes(train_target, target)
        y_train = _encode_labels(train_target, classes, "training")
        y_valid = _encode_labels(valid_target, classes, "validation")
        if len(np.unique(y_valid)) < 2:
            raise SingleClassError(
                "the validation data has one class only; the reward needs at least two"
            )
    else:
        y_train = _numeric_target(train_target, target, "training")
        y_valid = _numeric_target(valid_target, target, "validation")

    def split(frame: pd.DataFrame, rows: np.ndarray | None, y: np.ndarray,
              ids_by_position: bool) -> Split:
        if id_column is not None and id_column in frame.columns:
            ids = np.array(_column(frame, id_column, rows).to_numpy())
        elif ids_by_position:
            ids = np.arange(len(y))
        else:  # the frame's index labels; positions where they repeat (pd.concat of frames)
            index = frame.index.to_numpy() if frame.index.is_unique else np.arange(len(frame))
            ids = np.array(index if rows is None else index[rows])
        return Split(encoder.transform(frame, rows), y, ids)

    test_split = None
    if test is not None:
        if task == "classification":
            y_test = _encode_labels(test[target], classes, "test")
        else:
            y_test = _numeric_target(test[target], target, "test")
        test_split = split(test, None, y_test, ids_by_position=True)
    return PreparedData(
        task=task,
        train=split(train, train_rows, y_train, ids_by_position=False),
        valid=split(valid_frame, valid_rows, y_valid, ids_by_position=True),
        test=test_split,
        classes=classes,
        feature_names=encoder.feature_names,
        target=target,
        notes=encoder.notes_,
        integer_target=task == "regression" and _integer_target(train_target),
    )


def _integer_target(values: pd.Series) -> bool:
    """Whether the target column holds integers (an integer dtype: a column of whole numbers
    written as 3.0 holds floats, and stays so)."""
    return bool(pd.api.types.is_integer_dtype(values))


def _by_name(frame: pd.DataFrame, name: Any) -> Any:
    """``name`` as the frame's column label: a column labelled 3 is named "3" too, where no
    column is labelled "3"."""
    if name in frame.columns:
        return name
    same = [c for c in frame.columns if not isinstance(c, str) and str(c) == str(name)]
    return same[0] if len(same) == 1 else name


def _feature_columns(train: pd.DataFrame, target: str, id_column: str | None,
                     feature_columns: Sequence[str] | None) -> list:
    """The feature columns (default: all but the target and the id), checked against the
    training table's columns (``train`` may be an empty frame with those columns)."""
    _require_columns(train, [target], "training")
    if id_column is not None:
        _require_columns(train, [id_column], "training")
        if id_column == target:
            raise ConfigError(f"the id column {id_column!r} is the target; the id column names "
                              "rows, so it is another column (or none: rows are then numbered)")
    if feature_columns is None:
        features = [c for c in train.columns if c not in (target, id_column)]
    else:
        features = list(feature_columns)
        _require_columns(train, features, "training")
        if target in features:
            raise ConfigError(f"the target {target!r} cannot also be a feature column")
    if not features:
        raise MissingColumnError("the training table has no feature columns besides the target")
    return features


def _check_other_tables(needed: list, target: str, valid: pd.DataFrame | None,
                        test: pd.DataFrame | None) -> None:
    for frame, what in ((valid, "validation"), (test, "test")):
        if frame is not None:
            _require_columns(frame, needed, what)
            _check_target_values(frame, target, what)


def _classes(train_target: pd.Series, target: str) -> list:
    """The training labels' classes in a stable order; at least two, or SingleClassError."""
    classes = sorted(pd.unique(train_target).tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        kind = "value" if isinstance(classes[0], int | float | np.number) else "class"
        raise SingleClassError(
            f"the target {target!r} has one {kind} only ({classes[0]!r}) in the training "
            "table; valuation needs at least two"
        )
    if len(classes) > max(MAX_CLASSES_INFERRED, len(train_target) // 2):
        # an id, a date or free text named as the target: a class a row, nothing to learn
        # (300 dates took 35 s to give near-constant values)
        raise TargetTypeError(
            f"the target {target!r} has {len(classes)} classes in {len(train_target)} training "
            f"rows, most rows a class of their own: {_not_classes(train_target)}")
    return classes


def _not_classes(target: pd.Series) -> str:
    """What a target of about one class a row is likely to be, in words."""
    numbers = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if numbers or pd.to_numeric(target.dropna().astype(str), errors="coerce").notna().all():
        return "if it is a number to predict, the task is regression"
    return "is it the label column, not an id, a date or free text?"


def check_unique_ids(ids: pd.Series, id_column: str) -> None:
    """The id column's values name the rows in the results: each must be given, and unique."""
    missing = ids.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise DataError(
            f"the id column {id_column!r} names rows, but {len(rows)} row"
            f"{'s have' if len(rows) != 1 else ' has'} no id in the training table (0-based rows "
            f"{shown}; an empty cell, or text such as NA that reads as missing); give every row "
            "an id, or name no id column (rows are then numbered)")
    repeated = ids.duplicated(keep=False)
    if repeated.any():
        first = ids[repeated].iloc[0]
        first = first.item() if isinstance(first, np.generic) else first
        raise DataError(
            f"the id column {id_column!r} names rows, but {int(repeated.sum())} rows of the "
            "training table "
            f"share a name with another (for instance {first!r}); give a column whose values "
            "are unique, or none (rows are then numbered)" + (
                ". The ids were read as numbers: 007 and 7, or 1.10 and 1.1, are one number; "
                "where such ids differ, give them as text (in a Parquet file, a string column)"
                if pd.api.types.is_numeric_dtype(ids) else ""))


def _check_sizes(n_train: int, n_valid: int, held_out: tuple[int, float] | None = None,
                 hint: str | None = None) -> None:
    """At least MIN_TRAIN_ROWS training and MIN_VALID_ROWS validation rows; ``held_out`` =
    (the table's rows, the validation fraction) where the validation rows were held out of it;
    ``hint`` replaces the advice on the fraction where too few are held out."""
    split = "" if held_out is None else (
        f" after holding out {held_out[1]:.0%} of the table's {held_out[0]} rows as validation "
        f"({n_train} left to value, {n_valid} held out)")
    # a fraction of the table could leave enough rows on both sides
    movable = held_out is not None and held_out[0] >= MIN_TRAIN_ROWS + MIN_VALID_ROWS
    if n_train < MIN_TRAIN_ROWS:
        more = "; hold out a smaller fraction" if movable else ""
        raise TooFewRowsError(
            f"the training table has {n_train} rows{split}; at least {MIN_TRAIN_ROWS} are "
            f"needed{more}"
        )
    if n_valid < MIN_VALID_ROWS:
        more = hint or ("; hold out a larger fraction" if movable else "")
        raise TooFewRowsError(
            f"the validation data has {n_valid} rows{split}; at least {MIN_VALID_ROWS} are "
            f"needed{more}"
        )


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        available = ", ".join(repr(str(c)) for c in list(frame.columns)[:20])
        raise MissingColumnError(
            f"the {what} table has no column {shown}; its columns are {available}"
        )


def _check_target_values(frame: pd.DataFrame, target: str, what: str) -> None:
    empty = int(frame[target].isna().sum())
    if empty:
        first = frame.index[frame[target].isna()][:5].tolist()
        raise MissingTargetError(
            f"the target {target!r} is empty in {empty} {what} row{'s' if empty > 1 else ''} "
            f"(first rows: {first}); "
            "drop or fill them (in a CSV file, text such as NA, N/A or null reads as empty: "
            "a class so named needs another name)"
        )


def _encode_labels(labels: pd.Series, classes: list, what: str) -> np.ndarray:
    lookup = {label: index for index, label in enumerate(classes)}
    unseen = sorted({v for v in pd.unique(labels) if v not in lookup}, key=str)
    if unseen:
        raise UnseenClassError(
            f"the {what} data has target values the training table lacks: "
            f"{[_plain(v) for v in unseen[:10]]}; training classes are "
            f"{[_plain(v) for v in classes[:20]]}{_unseen_hint(unseen, classes)}"
        )
    return np.array(labels.map(lookup).to_numpy(dtype=np.int64))  # a writable copy


def _plain(value: object) -> object:
    """A label as a user wrote it (NumPy's scalars repr as np.int64(0))."""
    return value.item() if isinstance(value, np.generic) else value


def _unseen_hint(unseen: list, classes: list) -> str:
    """Why labels may look unseen: the same labels typed otherwise in the two tables, or a
    number to predict read as classes."""
    written = {str(_plain(c)) for c in classes}
    if all(str(_plain(v)) in written for v in unseen):
        return ("; they are the training classes written as another type (text against "
                "numbers): give the target column one type in both tables")
    if len(classes) > MAX_CLASSES_INFERRED and \
            pd.to_numeric(pd.Series(classes, dtype=object), errors="coerce").notna().all():
        return (f"; the target has {len(classes)} classes that are all numbers: if it is a "
                "number to predict, set the task to regression")
    return ""


def _numeric_target(values: pd.Series, target: str, what: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any() or pd.api.types.is_bool_dtype(values):
        example = values[bad].iloc[0] if bad.any() else values.iloc[0]
        raise TargetTypeError(
            f"a regression target must be numeric, but {what} column {target!r} holds "
            f"{example!r}; for labels use the classification task (--task classification, "
            "task='classification')"
        )
    array = np.array(numbers.to_numpy(dtype=np.float64))  # a writable copy
    # the models fit in float32: past its range a number is infinite there (a 500 before)
    beyond = ~np.isfinite(array) | (np.abs(array) > FLOAT32_MAX)
    if beyond.any():
        first = values.index[beyond][:5].tolist()
        raise TargetTypeError(
            f"the {what} target {target!r} holds {int(beyond.sum())} infinite value(s) or "
            f"value(s) beyond +-{FLOAT32_MAX:.1e} (first rows: {first}); correct or drop "
            "those rows")
    if what == "training" and len(array) and np.ptp(array) == 0:
        raise ConstantTargetError(
            f"the target {target!r} is {array[0]:g} in every training row: with nothing to "
            "predict, no row helps more than another")
    return array


def _hold_out(
    train: pd.DataFrame, target: str, task: Task, fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training rows and of the held-out validation rows."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the validation fraction must be between 0 and 1, not {fraction}")
    rng = np.random.default_rng(random_state)
    held: list[np.ndarray] = []
    if task == "classification":
        positions = np.arange(len(train))
        labels = train[target].to_numpy()
        for label in pd.unique(labels):
            members = positions[labels == label]
            take = int(round(fraction * len(members)))
            held.append(rng.choice(members, size=take, replace=False))
        chosen = np.sort(np.concatenate(held))
    else:
        take = int(round(fraction * len(train)))
        chosen = np.sort(rng.choice(len(train), size=take, replace=False))
    mask = np.zeros(len(train), dtype=bool)
    mask[chosen] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
