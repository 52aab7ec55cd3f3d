"""Split data in memory: each split read once into one contiguous float32 array.

Everything the models see is a view of, or an index into, these arrays: the tabular view is the array
itself, the sequence view gathers windows on the fly (:mod:`mlfactory.data.windows`).
The data contract is described in docs/data.md; its names are defined once in :mod:`mlfactory.data.contract`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlfactory.atomic import is_partial
from mlfactory.data.contract import (
    CLASS_NAMES,
    LABEL_VALUES,
    METADATA_FILE,
    SPLITS,
    UNFINISHED_MARKER,
    class_mapping,
    fwd_return_column,
    is_reserved,
    label_column,
    label_horizons,
    split_file,
    weight_column,
)
from mlfactory.data.split import SplitData
from mlfactory.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlfactory.data.multires import MultiResolutionBars, MultiResolutionDataset
    from mlfactory.data.windows import SequenceDataset, TabularDataset

# the contract's names that callers have always imported from here stay importable from here
__all__ = [
    "CLASS_NAMES", "LABEL_VALUES", "METADATA_FILE", "SPLITS", "UNFINISHED_MARKER", "SplitData",
    "TimeSeriesDataContainer", "class_mapping", "is_reserved", "split_file",
]

class TimeSeriesDataContainer:
    """The train/val/test splits of one split directory, for one label horizon.

    Args:
        splits: the three splits, keyed by name.
        feature_names: feature column names, in array column order.
        horizon: label horizon H in bars (the ``label_h{H}`` column).
        data_dir: where the splits were read from.
        metadata: the parsed ``scaling_metadata.json``, or None.
    """

    def __init__(
        self,
        splits: dict[str, SplitData],
        feature_names: list[str],
        horizon: int,
        data_dir: Path | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.splits = splits
        self.feature_names = feature_names
        self.horizon = horizon
        self.data_dir = data_dir
        self.metadata = metadata
        self.class_factors: list[float] | None = None  # set by with_balanced_classes
        self._multires: dict[tuple, "MultiResolutionBars"] = {}  # raw-bar bins, built once per spec

    @classmethod
    def from_parquet_dir(cls, path: str | Path, horizon: int) -> "TimeSeriesDataContainer":
        """Read ``{train,val,test}_scaled.parquet`` from ``path`` and check them against the data contract.

        Raises:
            DataError: naming the file, the column and what to do, for every way the input can be wrong.
        """
        data_dir = Path(path)
        if not data_dir.is_dir():
            raise DataError(
                f"data directory {data_dir} does not exist. Point --data.data_dir at a folder holding "
                f"{', '.join(split_file(s) for s in SPLITS)}, or leave it unset to use the embedded sample data."
            )
        if (data_dir / UNFINISHED_MARKER).exists() or is_partial(data_dir):
            raise DataError(
                f"{data_dir} is an unfinished mlfactory prepare output (a .partial temporary): the run that "
                "wrote it was interrupted. Delete it and point --data.data_dir at the finished directory, or run prepare again."
            )
        files = {split: _open_split(data_dir / split_file(split), horizon) for split in SPLITS}
        feature_names = _feature_columns(files["train"].schema, files["train"].path)
        for split in ("val", "test"):
            _check_same_features(feature_names, files[split].schema, files[split].path)
            _feature_columns(files[split].schema, files[split].path)
        splits = {split: _to_split(split, files[split], feature_names, horizon) for split in SPLITS}
        del files
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # the decoded pages are freed; hand them back to the system
        _check_time_order(splits, data_dir)
        classes = np.unique(splits["train"].labels)
        if len(classes) < 2:
            only = [CLASS_NAMES[c] for c in classes]
            raise DataError(
                f"{data_dir / split_file('train')}: {label_column(horizon)} holds only {only} in "
                f"{len(splits['train'])} row(s); a classifier needs at least two classes to learn from"
            )
        metadata = None
        if (data_dir / METADATA_FILE).is_file():
            try:
                metadata = json.loads((data_dir / METADATA_FILE).read_text())
            except (OSError, ValueError) as err:
                raise DataError(f"{data_dir / METADATA_FILE} is not valid JSON ({err}); fix or delete it") from None
        return cls(splits, feature_names, horizon, data_dir, metadata)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def split(self, name: str) -> SplitData:
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; choose one of {SPLITS}")
        return self.splits[name]

    def get_sklearn_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, w) of a split: the container's own arrays, not copies."""
        data = self.split(split)
        return data.features, data.labels, data.weights

    def get_tabular_dataset(self, split: str) -> "TabularDataset":
        """A dataset of single rows, batched by one index gather."""
        from mlfactory.data.windows import TabularDataset

        return TabularDataset(self.split(split))

    def get_pytorch_sequences(self, split: str, seq_len: int) -> "SequenceDataset":
        """A lazy dataset of ``seq_len``-row windows ending at each row with enough same-symbol history.

        A plain ``DataLoader(dataset, batch_size=256)`` batches it; ``collate_fn=collate_batch``
        (:mod:`mlfactory.data.windows`) skips the per-sample collation (docs/data.md).
        """
        from mlfactory.data.windows import SequenceDataset

        return SequenceDataset(self.split(split), seq_len)

    def get_multi_resolution_bars(
        self,
        split: str,
        timeframes: "Sequence[str]" = ("5min", "15min", "1h"),
        lookback: "int | Mapping[str, int] | None" = None,
        span: str = "8h",
    ) -> "MultiResolutionDataset":
        """A lazy dataset of raw-bar windows at several timeframes for the rows of ``split`` (multires.py).

        Each sample's ``x`` is ``{timeframe: (lookback, 5)}``: the last closed bins of each timeframe at the
        sample's time, normalised within the window. ``lookback`` is bins per window (one number, or one
        per timeframe); unset, every timeframe covers the same wall-clock ``span``. The bins are built
        from the raw bars once per container and reused by every split.
        """
        from mlfactory.data.multires import MultiResolutionBars, MultiResolutionDataset

        if self.data_dir is None:
            raise DataError("multi-resolution bars are read from a split directory's raw bars; this container has none")
        names = (timeframes,) if isinstance(timeframes, str) else tuple(timeframes)
        key = (names, tuple(sorted(lookback.items())) if isinstance(lookback, dict) else lookback, span)
        if key not in self._multires:
            self._multires[key] = MultiResolutionBars(self.data_dir, names, lookback, span)
        return MultiResolutionDataset(self.split(split), self._multires[key])

    def with_balanced_classes(self) -> "TimeSeriesDataContainer":
        """The same splits with weights times ``total / (3 * class_total)``, class totals from train.

        A class absent from train keeps factor 1. Features are shared, not copied.
        """
        train = self.splits["train"]
        totals = np.bincount(train.labels, weights=train.weights, minlength=len(LABEL_VALUES))
        present = totals > 0
        factors = np.ones(len(LABEL_VALUES))
        factors[present] = totals.sum() / (present.sum() * totals[present])
        splits = {
            name: dataclasses.replace(s, weights=(s.weights * factors[s.labels]).astype(np.float32))
            for name, s in self.splits.items()
        }
        balanced = TimeSeriesDataContainer(splits, self.feature_names, self.horizon, self.data_dir, self.metadata)
        balanced.class_factors = factors.tolist()
        return balanced

    def fingerprint(self) -> dict:
        """A cheap description of the data that trained a model, recorded in the run."""
        return {
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "horizon": self.horizon,
            "n_features": self.n_features,
            "rows": {name: len(s) for name, s in self.splits.items()},
            "class_weight_factors": self.class_factors,
            "time_ranges": {
                name: [str(s.timestamps[0]), str(s.timestamps[-1])] for name, s in self.splits.items()
            },
        }


# rows checked at a time for NaN/inf (a whole-array isfinite would cost a quarter of the features' bytes)
READ_BATCH_ROWS = 65_536


# decoded bytes per read at most (one row group, as many feature columns as fit), and at most this
# fraction of the split's array; pyarrow's threads decode the block's columns
READ_BLOCK_BYTES = 64 * 2**20
READ_BLOCK_FRACTION = 1 / 32
TRANSPOSE_ROWS = 4096  # rows per slab of the copy into the array: (4096, features) float32 stays in the CPU's cache


@dataclasses.dataclass
class _SplitFile:
    """One split file opened for reading: its schema, and the non-feature columns the split needs.

    The features are not read here: :func:`_read_features` decodes them a block at a time straight into
    the split's float32 array, so reading never holds the file twice (a whole-table read peaks at ~3.4-4.6x).
    """

    path: Path
    parquet: "pq.ParquetFile"
    schema: "pa.Schema"
    table: "pa.Table"


def _open_split(path: Path, horizon: int) -> _SplitFile:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(
            f"split file {path} is missing. A split directory needs "
            f"{', '.join(split_file(s) for s in SPLITS)} (see docs/data.md)."
        )
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        wanted = ("datetime", "symbol", label_column(horizon), weight_column(horizon), fwd_return_column(horizon))
        table = parquet.read(columns=[c for c in wanted if c in schema.names])
    except Exception as err:  # pyarrow raises several unrelated types for damaged files
        raise DataError(f"cannot read {path} as parquet ({type(err).__name__}: {err}); rewrite the file") from None
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows; every split needs at least one labelled row")
    if "datetime" not in schema.names:
        raise DataError(f"{path} has no 'datetime' column; add the UTC timestamp of each row's bar")
    return _SplitFile(path, parquet, schema, table)


def _read_features(source: _SplitFile, feature_names: list[str], order: np.ndarray | None) -> np.ndarray:
    """The feature columns as one (rows, features) float32 array, in ``order`` (None: file order).

    One row group at a time, as many columns per read as fit in ``READ_BLOCK_BYTES`` and 1/32 of the
    array (every column of a usual row group; one column of a file that is a single huge row group),
    decoded by pyarrow's threads: memory stays one block above the array (pyarrow decodes a whole row group per batch even
    in ``iter_batches``, 5.4-6x the array at peak on a one-row-group file), and each block lands in
    a band of rows, where a column at a time rewrote every cache line of the array once per column.
    """
    n = source.table.num_rows
    try:
        features = np.empty((n, len(feature_names)), dtype=np.float32)
    except MemoryError:
        raise _out_of_memory(source.path, n, len(feature_names)) from None
    destination = None
    if order is not None:  # file row r goes to array row destination[r]
        destination = np.empty(n, dtype=np.int64)
        destination[order] = np.arange(n, dtype=np.int64)
    metadata = source.parquet.metadata
    budget = min(READ_BLOCK_BYTES, int(features.nbytes * READ_BLOCK_FRACTION))
    start = 0
    try:
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            width = max(1, budget // max(1, rows * features.itemsize))
            for first in range(0, len(feature_names), width):
                names = feature_names[first : first + width]
                block = source.parquet.read_row_group(group, columns=names, use_threads=True)
                if block.num_rows != rows or start + rows > n:
                    raise DataError(f"{source.path}: row group {group} holds {block.num_rows} rows where its "
                                    f"metadata says {rows} ('datetime' has {n} in all); rewrite the file")
                # copied in slabs of TRANSPOSE_ROWS rows: a (4096, k) slab stays in the CPU's cache while
                # every column writes into it (measured 1.5-3x faster than stacking the block and copying
                # its transpose, ~10x faster than a column at a time down the whole array)
                columns = [column.to_numpy() for column in block.columns]
                del block
                band = slice(first, first + len(names))
                for lo in range(0, rows, TRANSPOSE_ROWS):
                    hi = min(rows, lo + TRANSPOSE_ROWS)
                    if destination is None:  # the slab is a view of the array
                        slab = features[start + lo : start + hi, band]
                    else:
                        slab = np.empty((hi - lo, len(names)), dtype=np.float32)
                    for j, values in enumerate(columns):
                        slab[:, j] = values[lo:hi]
                    if destination is not None:
                        features[destination[start + lo : start + hi], band] = slab
            start += rows
    except DataError:
        raise
    except MemoryError:
        raise _out_of_memory(source.path, n, len(feature_names)) from None
    except Exception as err:  # a damaged page surfaces only when it is decoded
        raise DataError(f"cannot read {source.path} as parquet ({type(err).__name__}: {err}); rewrite the file") from None
    if start != n:
        raise DataError(f"{source.path}: the feature columns hold {start} rows, 'datetime' {n}; rewrite the file")
    return features


def _out_of_memory(path: Path, rows: int, n_features: int) -> DataError:
    need = rows * n_features * 4 / 2**30
    return DataError(f"{path}: out of memory while reading its features ({rows:,} rows x {n_features} float32 = "
                     f"{need:.2f} GiB, held once; the load peaks at about 1.15x that). Free memory, or train on fewer "
                     "rows or features")


def _feature_columns(schema: "pa.Schema", path: Path) -> list[str]:
    import pyarrow.types as pat

    features = []
    for field in schema:
        if is_reserved(field.name):
            continue
        if not (pat.is_integer(field.type) or pat.is_floating(field.type) or pat.is_boolean(field.type)):
            raise DataError(
                f"{path}: column {field.name!r} has type {field.type}, but every column that is not reserved "
                "(datetime, symbol, open/high/low/close/volume, label_h*, sample_weight_h*, fwd_return_h*) is "
                "a feature and must be numeric. Encode it as numbers or drop it."
            )
        features.append(field.name)
    if not features:
        raise DataError(f"{path} has no feature columns; add at least one numeric column")
    return features


def _check_same_features(expected: list[str], schema: "pa.Schema", path: Path) -> None:
    found = [c for c in schema.names if not is_reserved(c)]
    if found != expected:
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        detail = "; ".join(
            part
            for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "")
            if part
        ) or "same columns in a different order"
        raise DataError(
            f"{path}: feature columns differ from train ({detail}). All splits must have the same features "
            "in the same order; rebuild the splits together."
        )


def _to_split(name: str, source: _SplitFile, feature_names: list[str], horizon: int) -> SplitData:
    table, path = source.table, source.path
    n = table.num_rows
    symbol_codes, symbols = _symbol_codes(table)
    order = _group_by_symbol(symbol_codes)

    labels = _labels(table, source.schema, horizon, path, order)
    features = _read_features(source, feature_names, order)
    _check_finite(features, feature_names, path)
    weights = _optional_column(table, weight_column(horizon), order)
    if weights is None:
        weights = np.ones(n, dtype=np.float32)
    elif not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
        raise DataError(
            f"{path}: column {weight_column(horizon)!r} must be finite, non-negative and not all zero; "
            "fix the weights or drop the column (every row then weighs 1)"
        )
    fwd_returns = _optional_column(table, fwd_return_column(horizon), order)

    timestamps = _timestamps(table, path)
    if order is not None:
        timestamps, symbol_codes = timestamps[order], symbol_codes[order]
    segment_start = _segment_starts(symbol_codes)
    _check_sorted(timestamps, segment_start, symbols, symbol_codes, path)
    return SplitData(name, features, labels, weights, timestamps, symbol_codes, symbols, fwd_returns, segment_start)


def _symbol_codes(table: "pa.Table") -> tuple[np.ndarray, tuple[str, ...]]:
    import pyarrow as pa

    if "symbol" not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int32), ("",)
    if table.column("symbol").null_count:
        raise DataError(f"column 'symbol' has {table.column('symbol').null_count} empty values; fill or drop those rows")
    encoded = table.column("symbol").cast(pa.string()).combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int32), tuple(encoded.dictionary.to_pylist())


def _group_by_symbol(codes: np.ndarray) -> np.ndarray | None:
    """A stable permutation that makes each symbol one contiguous block, or None if already so."""
    changes = np.count_nonzero(codes[1:] != codes[:-1])
    if changes == len(np.unique(codes)) - 1:
        return None
    return np.argsort(codes, kind="stable")


def _segment_starts(codes: np.ndarray) -> np.ndarray:
    boundary = np.ones(len(codes), dtype=bool)
    boundary[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(boundary)
    return starts[np.cumsum(boundary) - 1].astype(np.int64)


def _labels(table: "pa.Table", schema: "pa.Schema", horizon: int, path: Path, order: np.ndarray | None) -> np.ndarray:
    column = label_column(horizon)
    if column not in table.column_names:
        present = label_horizons(schema.names)
        raise DataError(
            f"{path} has no label column {column!r} for horizon {horizon}; horizons present: {present or 'none'}. "
            f"Pass --data.horizon with one of them."
        )
    import pyarrow.types as pat

    if not (pat.is_integer(table.schema.field(column).type) or pat.is_floating(table.schema.field(column).type)):
        raise DataError(
            f"{path}: column {column!r} has type {table.schema.field(column).type}; it must hold the numbers "
            "-1, 0, +1 (e.g. int8)"
        )
    raw = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isin(raw, LABEL_VALUES)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {column!r} must hold -1, 0 or +1 (down, neutral, up); row {first} holds {raw[first]}"
        )
    labels = (raw + 1).astype(np.int64)
    return labels if order is None else labels[order]


def _optional_column(table: "pa.Table", column: str, order: np.ndarray | None) -> np.ndarray | None:
    if column not in table.column_names:
        return None
    values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float32)
    return values if order is None else values[order]


def _timestamps(table: "pa.Table", path: Path) -> np.ndarray:
    import pyarrow.types as pat

    column = table.column("datetime")
    if column.null_count:
        raise DataError(f"{path}: column 'datetime' has {column.null_count} empty values; drop those rows")
    if not pat.is_timestamp(column.type):
        raise DataError(
            f"{path}: column 'datetime' has type {column.type}; it must be a timestamp (UTC). "
            "Convert it with pandas.to_datetime(..., utc=True) before writing the parquet file."
        )
    values = column.to_numpy()
    if hasattr(values, "tz"):  # pandas may hand back a DatetimeArray for tz-aware columns
        values = np.asarray(values.tz_convert("UTC").tz_localize(None))
    return values.astype("datetime64[ns]")


def _check_finite(features: np.ndarray, names: list[str], path: Path) -> None:
    # in blocks of rows: a whole-array isfinite would cost another quarter of the features' memory
    if all(np.isfinite(features[i:i + READ_BATCH_ROWS]).all() for i in range(0, len(features), READ_BATCH_ROWS)):
        return
    bad_columns = [j for j in range(features.shape[1]) if not np.isfinite(features[:, j]).all()]
    j = bad_columns[0]
    not_finite = ~np.isfinite(features[:, j])
    n_bad = int(not_finite.sum())
    if n_bad == len(features):
        raise DataError(f"{path}: feature column {names[j]!r} is entirely NaN/inf; drop it or fix its source")
    raise DataError(
        f"{path}: feature column {names[j]!r} has {n_bad} NaN/inf values (first at row "
        f"{int(np.flatnonzero(not_finite)[0])}); {len(bad_columns)} column(s) affected. Fill or drop those "
        "rows when building the splits."
    )


def _check_sorted(
    timestamps: np.ndarray, segment_start: np.ndarray, symbols: tuple[str, ...], codes: np.ndarray, path: Path
) -> None:
    same_symbol = segment_start[1:] == segment_start[:-1]
    not_increasing = same_symbol & (timestamps[1:] <= timestamps[:-1])
    if not_increasing.any():
        row = int(np.flatnonzero(not_increasing)[0]) + 1
        symbol = symbols[codes[row]]
        raise DataError(
            f"{path}: timestamps are not strictly increasing{f' for symbol {symbol!r}' if symbol else ''} at "
            f"{timestamps[row]} (after {timestamps[row - 1]}). Sort each symbol's rows by datetime and drop duplicates."
        )


def _check_time_order(splits: dict[str, SplitData], data_dir: Path) -> None:
    for earlier, later in zip(SPLITS, SPLITS[1:]):
        end, start = splits[earlier].timestamps.max(), splits[later].timestamps.min()
        if end >= start:
            raise DataError(
                f"{data_dir}: split time ranges overlap: {earlier} ends at {end} but {later} starts at {start}. "
                "Splits must be chronological (train before val before test), or the test score leaks the future."
            )
