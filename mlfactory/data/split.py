"""One split in memory: the arrays every view of the data reads (docs/data.md).

Its own module so that the container that builds splits and the views over them
(:mod:`mlfactory.data.windows`, :mod:`mlfactory.data.multires`) both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split in memory. Rows are grouped by symbol and sorted by time within a symbol.

    Attributes:
        name: ``train``, ``val`` or ``test``.
        features: (n_rows, n_features) float32, C-contiguous: the only copy of the features.
        labels: (n_rows,) int64 model classes 0/1/2 (label -1/0/+1 plus one).
        weights: (n_rows,) float32 sample weights (ones when the split has none).
        timestamps: (n_rows,) datetime64[ns], UTC.
        symbol_codes: (n_rows,) int32 index into ``symbols``.
        symbols: symbol names (``("",)`` when the split has no symbol column).
        fwd_returns: (n_rows,) float32 forward returns, or None.
        segment_start: (n_rows,) int64 first row of each row's symbol block, so windows never cross one.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray
    symbol_codes: np.ndarray
    symbols: tuple[str, ...]
    fwd_returns: np.ndarray | None
    segment_start: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def window_end_rows(self, seq_len: int) -> np.ndarray:
        """Rows that have ``seq_len - 1`` earlier rows of the same symbol: the valid window ends."""
        rows = np.arange(len(self), dtype=np.int64)
        return rows[rows - self.segment_start >= seq_len - 1]

    def identity(self, rows: np.ndarray) -> "pd.DataFrame":
        """Sample identity of ``rows``: the timestamp and symbol of each sample's last bar."""
        import pandas as pd

        return pd.DataFrame(
            {
                "datetime": pd.to_datetime(self.timestamps[rows]).tz_localize("UTC"),
                "symbol": np.asarray(self.symbols, dtype=object)[self.symbol_codes[rows]],
            }
        )


BATCH_ROWS = 65_536
"""Rows per piece where a split is read in pieces (a row subset fed to a library, the train-metrics prediction)."""


@dataclass(frozen=True)
class SplitRows:
    """The rows of one split that a fit reads: the container's own arrays and the row numbers in use.

    ``rows`` is ``None`` when every row is in use; ``X`` is then the container's array, which a library
    reads as it is. With a row subset (cross-validation folds, tuning trials) the features are never
    gathered whole: :meth:`batches` gathers ``batch_rows`` rows at a time, for a library's batched
    builder (XGBoost's ``DataIter``; the others still gather the subset). Labels and weights of the rows in use
    (:attr:`y_used`, :attr:`w_used`) are small and gathered at once.
    """

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X) if self.rows is None else len(self.rows)

    @property
    def y_used(self) -> np.ndarray:
        """Labels of the rows in use."""
        return self.y if self.rows is None else self.y[self.rows]

    @property
    def w_used(self) -> np.ndarray:
        """Sample weights of the rows in use."""
        return self.w if self.rows is None else self.w[self.rows]

    def features(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Features of the rows in use ``start:stop``: a view of ``X`` without a subset, else a gathered copy."""
        if self.rows is None:
            return self.X[start:stop]
        return self.X[self.rows[start:stop]]

    def batches(self, batch_rows: int | None = None) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of consecutive pieces of at most ``batch_rows`` rows in use (unset: :data:`BATCH_ROWS`)."""
        batch_rows = batch_rows or BATCH_ROWS
        for start in range(0, len(self), batch_rows):
            yield start, min(start + batch_rows, len(self))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, w)`` of the rows in use: the container's arrays, or copies gathered for a subset."""
        return self.features(), self.y_used, self.w_used
