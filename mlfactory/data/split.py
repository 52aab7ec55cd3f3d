"""One split in memory: the arrays every view of the data reads (docs/data.md).

Its own module so that the container that builds splits and the views over them
(:mod:`mlfactory.data.windows`, :mod:`mlfactory.data.multires`) both import it without importing each other.
"""

from __future__ import annotations

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
