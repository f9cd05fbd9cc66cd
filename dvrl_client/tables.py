"""Tables in and out: what an upload sends, and the service's results as DataFrames.

pandas is imported only when a table is built (``import dvrl_client`` stays light).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calls import Upload
from .resources import Dataset, JobView

if TYPE_CHECKING:
    import pandas as pd

# the columns `dvrl value` writes, in its order (dvrl_core.cli; std_error only with --ensemble,
# noise_injected only with --inject-noise); the service adds `flagged`
DVRL_VALUE_COLUMNS = ("row", "value", "rank", "label", "std_error", "noise_injected")


def as_upload(table: Any, name: str | None = None) -> Upload:
    """A path (CSV or Parquet, streamed from disk when sent) or a pandas DataFrame (written as
    Parquet, without its index: ``reset_index()`` first to keep it)."""
    if isinstance(table, str | os.PathLike):
        path = Path(table)
        if not path.is_file():  # as dvrl_core.io says it for `dvrl value`
            raise FileNotFoundError(f"{path}: a directory, not a table file" if path.is_dir()
                                    else f"{path}: not a table file (a device, a pipe...)"
                                    if path.exists() else f"{path}: no such file")
        return Upload(name=name or path.name, path=path)
    pandas = sys.modules.get("pandas")  # a DataFrame exists only once pandas is imported
    if pandas is not None and isinstance(table, pandas.DataFrame):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return Upload(name=name or "dataframe.parquet", data=buffer.getvalue())
    raise TypeError(f"a table is a path to a CSV or Parquet file or a pandas DataFrame, not "
                    f"{type(table).__name__}")


def values_frame(parquet: bytes, job: JobView, train: Dataset | None) -> pd.DataFrame:
    """The values download (input order) with ``row`` and ``label`` in their own types."""
    import pandas as pd

    return restore_types(pd.read_parquet(io.BytesIO(parquet)), job, train)


def page_frame(items: list[dict[str, Any]], job: JobView, train: Dataset | None) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(items, columns=["row", "value", "rank", "label", "flagged",
                                         "noise_injected"])
    if frame["noise_injected"].isna().all():  # as the downloads: only with label_noise
        frame = frame.drop(columns="noise_injected")
    return restore_types(frame, job, train)


def restore_types(frame: pd.DataFrame, job: JobView, train: Dataset | None) -> pd.DataFrame:
    """The service stores ``row`` and ``label`` as text; they get back the type they have in
    the training table (as ``dvrl value`` gives them): row numbers are integers, an id column
    and a classification label keep their column's type (a CSV's id column stays text, as
    ``dvrl value`` reads it: 007 keeps its zeros), a regression label is a number (an integer
    where the column holds integers and the label is still whole)."""
    spec = job.spec
    types = train.column_types() if train is not None else {}
    id_type = "integer" if spec.get("id_column") is None else types.get(spec["id_column"])
    if spec.get("id_column") is not None and train is not None and \
            not train.filename.lower().endswith((".parquet", ".pq")):
        id_type = None  # as written in the file (it was int64 where dvrl value wrote text)
    task = (job.summary or {}).get("task")
    label_type = types.get(spec["target"])
    if task == "regression" and label_type != "integer":
        label_type = "number"
    frame["row"] = _as_type(frame["row"], id_type)
    frame["label"] = _as_type(frame["label"], label_type)
    return frame


def _as_type(text: pd.Series, kind: str | None) -> pd.Series:
    """Text back to integers, numbers or booleans; anything else (and text that does not
    convert, such as a missing id) stays text."""
    import pandas as pd

    try:
        if kind == "integer":
            whole = pd.to_numeric(text, errors="raise")
            # a regression target that label noise moved off whole numbers stays numbers
            return whole if whole.dtype.kind == "f" else whole.astype("int64")
        if kind == "number":
            return text.astype("float64")
        if kind == "boolean" and set(text.unique()) <= {"True", "False"}:
            return text == "True"
    except (TypeError, ValueError):
        pass
    return text


def dvrl_value_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the columns ``dvrl value`` writes, in its order (``std_error`` only for an
    ensemble's values, as there)."""
    kept = [c for c in DVRL_VALUE_COLUMNS if c in frame.columns]
    if "std_error" in kept and frame["std_error"].isna().all():
        kept.remove("std_error")
    return frame[kept]


def curves_frames(body: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Each curve of ``/curves`` as a DataFrame (``reward_trace``; ``removal`` and
    ``discovery`` when the job made them); the removal curves' metric, model and row count are
    in the frame's ``attrs``."""
    import pandas as pd

    frames = {}
    for name, curve in body.items():
        if not curve:
            continue
        columns = {key: value for key, value in curve.items() if isinstance(value, list)}
        frame = pd.DataFrame(columns)
        frame.attrs = {key: value for key, value in curve.items() if key not in columns}
        frames[name] = frame
    return frames
