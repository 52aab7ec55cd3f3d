"""From a DataFrame of unscaled features to the bundle's predictions, chunk by chunk.

A sequence model's sample is the window of ``seq_len`` rows of one symbol that ends at a row, exactly
as in training (docs/data.md): rows are ordered by ``datetime`` within each symbol, and a row with
fewer than ``seq_len - 1`` earlier rows of its symbol has no window. The :class:`Predictor` keeps the
last ``seq_len - 1`` rows of every symbol it has seen, so the next chunk's windows reach back into the
previous one and chunked results equal unchunked ones. Only a batch of windows is ever gathered.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlfactory.data.contract import DATETIME_COLUMN as DATETIME
from mlfactory.data.contract import SYMBOL_COLUMN as SYMBOL
from mlfactory.errors import DataError
from mlfactory.prepare.scaling import Scaler


class BundleLike(Protocol):
    """What a :class:`Predictor` asks of a loaded bundle (:class:`mlfactory.inference.bundle.ModelBundle`).

    Named here, not imported, so that the bundle module can import this one and not the other way round.
    """

    spec: dict[str, Any]
    view: Any  # mlfactory.data.views.InputView
    module: Any  # the registered model (its ``fits_once`` flag)
    seq_len: int
    class_names: list[str]
    class_labels: list[int]

    def transform(self, frame: pd.DataFrame, first_row: int = 0) -> np.ndarray: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


def feature_matrix(frame: pd.DataFrame, features: list[str], scaler: Scaler | None, first_row: int = 0) -> np.ndarray:
    """(n, n_features) float32: ``frame``'s feature columns in order, scaled by ``scaler`` when given."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise DataError(
            f"the input is missing {len(missing)} of the model's {len(features)} feature columns: {missing}. "
            "Give every feature the model was trained on, under the same names (bundle.json lists them)."
        )
    wrong = {f: str(frame[f].dtype) for f in features if not pd.api.types.is_numeric_dtype(frame[f].dtype)}
    if wrong:
        raise DataError(
            f"feature columns must be numbers (or booleans), but these have other types: {wrong}. "
            "Convert them, or fix the values that made them text (e.g. 'n/a' in a CSV)."
        )
    selected = frame[features]
    values = selected.to_numpy()  # the columns' common dtype: float32 columns stay float32 (no float64 copy)
    if values.dtype.kind not in "fiu":  # booleans, nullable or mixed types
        values = selected.to_numpy(dtype=np.float64, na_value=np.nan)
    if scaler is None:
        x = np.empty(values.shape, dtype=np.float32)  # C-contiguous, as the split arrays are
        x[...] = values
    else:
        x = scaler.transform(values)  # the same code and numbers as the split files were written with
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=0))
        j = int(bad[0])
        rows = np.flatnonzero(~finite[:, j])
        raise DataError(
            f"feature column {features[j]!r} has {len(rows)} missing, NaN or infinite value(s) (first at input row "
            f"{first_row + int(rows[0])}); {len(bad)} column(s) affected. The model was trained on finite values "
            "only: fill or drop those rows."
        )
    return x


def timestamps(frame: pd.DataFrame, required: bool, first_row: int = 0) -> np.ndarray | None:
    """``datetime`` as int64 nanoseconds since the epoch, UTC (naive values are UTC); None when absent and optional."""
    if DATETIME not in frame.columns:
        if required:
            raise DataError(
                "the input has no 'datetime' column; a sequence model needs it to order each symbol's rows "
                "into windows. Add the UTC timestamp of each row's bar."
            )
        return None
    column = frame[DATETIME]
    if not (pd.api.types.is_datetime64_any_dtype(column.dtype) or pd.api.types.is_object_dtype(column.dtype)
            or pd.api.types.is_string_dtype(column.dtype)):
        raise DataError(
            f"column 'datetime' has type {column.dtype}; it must hold timestamps (or text such as "
            "'2024-01-02 00:05:00+00:00'). Convert it with pandas.to_datetime(..., utc=True)."
        )
    try:
        parsed = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as err:
        raise DataError(f"column 'datetime' cannot be read as timestamps ({err})") from None
    if parsed.isna().any():
        row = first_row + int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(f"column 'datetime' is empty at input row {row}; every row needs its bar's timestamp")
    return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").view(np.int64)


def symbols(frame: pd.DataFrame, first_row: int = 0) -> pd.Series:
    """``symbol`` as text, indexed 0..n-1; ``""`` for every row when the input has one series."""
    if SYMBOL not in frame.columns:
        return pd.Series([""] * len(frame), dtype=str)
    column = frame[SYMBOL]
    if column.isna().any():
        row = first_row + int(np.flatnonzero(column.isna().to_numpy())[0])
        raise DataError(f"column 'symbol' is empty at input row {row}; fill or drop those rows")
    return column.astype(str).reset_index(drop=True)


class Predictor:
    """Predictions for consecutive chunks of one input (a whole DataFrame is one chunk).

    For sequence models, rows of a symbol must come in time order *across* chunks: a chunk may hold
    rows in any order (it is sorted), but no row may be earlier than a row of the same symbol in an
    earlier chunk.

    Args:
        bundle: the loaded bundle.
        batch_size: rows or windows per call of the model.
    """

    def __init__(self, bundle: BundleLike, batch_size: int = 2048) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle = bundle
        self.batch_size = batch_size
        self.rows_seen = 0
        # symbol -> (its last seq_len - 1 model-input rows (k, n_features), their timestamps (k,))
        self.carry: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        first = self.rows_seen
        sequence = self.bundle.view.windowed
        x = self.bundle.transform(frame, first_row=first)
        times = timestamps(frame, required=sequence, first_row=first)
        names = symbols(frame, first_row=first)
        probs, has_history = self.predict_inputs(x, times, names.to_numpy(dtype=object))
        return output_frame(times, names, probs, has_history, self.bundle.class_names, self.bundle.class_labels)

    def predict_inputs(self, x: np.ndarray, times: np.ndarray | None, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (n, 3) and ``has_history`` (n,) of model-input rows ``x`` (scaled, (n, n_features) float32)
        with their int64 ns ``times`` and object ``names`` (symbols): the array form of a call, for callers
        that built the rows themselves (raw bars, :mod:`mlfactory.inference.bars`). Sequence models need ``times``."""
        if self.bundle.view.windowed:
            probs, has_history = self._windows(x, times, names)
        else:
            probs, has_history = self._rows(x), np.ones(len(x), dtype=bool)
        self.rows_seen += len(x)
        return probs, has_history

    def _rows(self, x: np.ndarray) -> np.ndarray:
        # an estimator takes the whole chunk at once (its library batches and threads by itself)
        step = max(len(x), 1) if self.bundle.module.fits_once else self.batch_size
        probs = np.empty((len(x), 3), dtype=np.float32)
        for start in range(0, len(x), step):
            probs[start : start + step] = self.bundle.predict_proba(x[start : start + step])
        return probs

    def _windows(self, x: np.ndarray, times: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities of the windows ending at each row (NaN without enough history), and where they exist."""
        n, k = len(x), self.bundle.seq_len - 1
        # the rows carried over from earlier chunks, for the symbols in this one
        carried = [(s, *self.carry[s]) for s in pd.unique(names) if s in self.carry]
        all_x = np.concatenate([x, *(c[1] for c in carried)]) if carried else x
        all_t = np.concatenate([times, *(c[2] for c in carried)]) if carried else times
        all_s = np.concatenate([names, *(np.full(len(c[1]), c[0], dtype=object) for c in carried)])
        source = np.concatenate([np.arange(n), np.full(len(all_x) - n, -1)])  # input row, -1 = carried

        codes = pd.factorize(all_s)[0]
        order = np.lexsort((all_t, codes))  # by symbol, then time
        codes, sorted_t, source = codes[order], all_t[order], source[order]
        self._check_order(codes, sorted_t, source, all_s[order])
        boundary = np.ones(len(order), dtype=bool)
        boundary[1:] = codes[1:] != codes[:-1]
        starts = np.flatnonzero(boundary)
        segment_start = starts[np.cumsum(boundary) - 1]
        targets = np.flatnonzero((source >= 0) & (np.arange(len(order)) - segment_start >= k))

        sorted_x = all_x[order]
        offsets = np.arange(-k, 1)
        probs = np.full((n, 3), np.nan, dtype=np.float32)
        for start in range(0, len(targets), self.batch_size):
            ends = targets[start : start + self.batch_size]
            probs[source[ends]] = self.bundle.predict_proba(sorted_x[ends[:, None] + offsets])
        has_history = np.zeros(n, dtype=bool)
        has_history[source[targets]] = True

        for start, end in zip(starts, np.append(starts[1:], len(order))):
            keep = slice(max(start, end - k), end)
            self.carry[all_s[order[start]]] = (sorted_x[keep].copy(), sorted_t[keep].copy())
        return probs, has_history

    def _check_order(self, codes: np.ndarray, times: np.ndarray, source: np.ndarray, names: np.ndarray) -> None:
        same = codes[1:] == codes[:-1]
        repeated = same & (times[1:] == times[:-1])
        if repeated.any():
            i = int(np.flatnonzero(repeated)[0]) + 1
            where = "a row of an earlier chunk" if min(source[i - 1], source[i]) < 0 else "another row"
            raise DataError(
                f"symbol {names[i]!r} has two rows at {_ts(times[i])} (input row {self.rows_seen + max(source[i - 1], source[i])} "
                f"repeats {where}); each symbol needs one row per timestamp. Drop the duplicates."
            )
        late = same & (source[:-1] >= 0) & (source[1:] < 0)  # a new row sorted before a carried one
        if late.any():
            i = int(np.flatnonzero(late)[0])
            raise DataError(
                f"input row {self.rows_seen + source[i]} (symbol {names[i]!r}, {_ts(times[i])}) is earlier than rows of "
                f"the same symbol in an earlier chunk (up to {_ts(self.carry[names[i]][1][-1])}). Chunked "
                "prediction needs each symbol's rows in time order: sort the file by datetime (or symbol, datetime)."
            )


def output_frame(
    times: np.ndarray | None,
    names: pd.Series,
    probs: np.ndarray,
    has_history: np.ndarray,
    class_names: list[str],
    class_labels: list[int],
) -> pd.DataFrame:
    """The prediction table: identity, one probability column per class, class, label, confidence, history flag."""
    n = len(probs)
    if times is None:
        times = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]").view(np.int64)
    predicted = probs.argmax(axis=1).astype(np.int8) if n else np.zeros(0, np.int8)
    predicted[~has_history] = 0
    out = {
        DATETIME: pd.Series(pd.to_datetime(times, unit="ns", utc=True)),
        SYMBOL: names.reset_index(drop=True),
    }
    for j, name in enumerate(class_names):
        out[f"p_{name}"] = probs[:, j]
    # nullable integers: no class where there is no window
    out["predicted_class"] = pd.arrays.IntegerArray(predicted, ~has_history)
    out["predicted_label"] = pd.arrays.IntegerArray(np.asarray(class_labels, dtype=np.int8)[predicted], ~has_history)
    out["confidence"] = probs.max(axis=1) if n else np.zeros(0, np.float32)
    out["has_history"] = has_history
    return pd.DataFrame(out)


def _ts(value: np.int64) -> str:
    return str(pd.Timestamp(int(value), unit="ns", tz="UTC"))
