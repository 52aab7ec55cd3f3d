"""The multi-resolution view: for each sample, windows of the last closed raw bars at several timeframes.

A sequence model on indicators reads pre-computed features; this view hands it the bars themselves
(docs/data.md, "Multi-resolution bars"). For a sample at base bar ``t`` and each timeframe, the
window holds the last ``lookback`` complete bins of that timeframe that had closed by ``t``: the same
fixed-anchor bins and closed-bar rule as ``mlfactory prepare`` (``prepare/timeframes.py``), so a
window never contains a bar that was still forming.

Normalisation uses only the window itself, so nothing leaks from later bars nor from other samples:

- open, high, low, close: ``log(price / close_t)``, relative to the sample's last base close, divided
  by the standard deviation of the window's close-to-close log returns (its own volatility);
- volume: ``log(1 + volume)`` minus its mean over the window.

Memory: the bins of every timeframe are built once per symbol (a few numbers per bar, not per
sample); a batch is gathered by one index operation per timeframe and is the only per-sample copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlfactory.data.contract import BARS_FILE, DATETIME_COLUMN, RAW_BAR_COLUMNS, SPLITS, SYMBOL_COLUMN, split_file
from mlfactory.data.split import SplitData
from mlfactory.data.windows import _RowDataset
from mlfactory.errors import DataError
from mlfactory.prepare import timeframes as tfs  # numpy only; this module itself loads on first use

DEFAULT_TIMEFRAMES: tuple[str, ...] = ("5min", "15min", "1h")
DEFAULT_SPAN = "8h"
"""Wall-clock span of every timeframe's window when no lookback is given: 96 x 5min, 32 x 15min, 8 x 1h."""
CHANNELS: tuple[str, ...] = RAW_BAR_COLUMNS
_MIN_SCALE = 1e-8


@dataclass(frozen=True)
class _Timeframe:
    """One timeframe's complete bins over all symbols, stacked, as the gather reads them."""

    name: str
    lookback: int
    bins: np.ndarray  # (n_bins, 5) float64: log open, log high, log low, log close, log1p volume
    visible: np.ndarray  # (n_base_bars,) int64 global bin index visible at each base bar, -1: none yet
    first_bin: np.ndarray  # (n_base_bars,) int64 global index of the first bin of the bar's symbol


class MultiResolutionBars:
    """Every symbol's raw base bars and their bins at each requested timeframe.

    Args:
        data_dir: a split directory; its ``bars.parquet`` (written by ``prepare``) is read, else the raw
            ``open/high/low/close/volume`` columns of the three split files.
        timeframes: timeframe names (``1min`` ... ``4h``), each a whole multiple of the base resolution.
        lookback: bins per window: one number for every timeframe, a mapping per timeframe, or None to
            give every timeframe the same wall-clock ``span``.
        span: the window's wall-clock span when ``lookback`` is None (``8h``: 96 x 5min, 8 x 1h).
    """

    def __init__(
        self,
        data_dir: str | Path,
        timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
        lookback: int | Mapping[str, int] | None = None,
        span: str = DEFAULT_SPAN,
    ) -> None:
        self._build_all(_read_bars(Path(data_dir)), timeframes, lookback, span)

    @classmethod
    def from_bars(cls, bars, timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
                  lookback: int | Mapping[str, int] | None = None, span: str = DEFAULT_SPAN) -> "MultiResolutionBars":
        """The windows of bars already read and repaired (``prepare.bars.Bars``): an inference bundle's raw bars."""
        self = cls.__new__(cls)
        self._build_all(bars, timeframes, lookback, span)
        return self

    def _build_all(self, bars, timeframes: Sequence[str], lookback: int | Mapping[str, int] | None, span: str) -> None:
        self.base_ns = int(bars.resolution_ns)
        self.symbols = bars.symbols
        self.bounds = bars.bounds
        self.times = bars.times
        self.log_close = np.log(bars.close)
        names = [timeframes] if isinstance(timeframes, str) else list(timeframes)
        if not names or len(set(names)) != len(names):
            raise DataError(f"timeframes must be distinct timeframe names, got {names!r}")
        self.timeframes: list[_Timeframe] = []
        for name in names:
            tf_ns = _parse(name)
            if tf_ns % self.base_ns:
                raise DataError(
                    f"timeframe {name!r} is not a whole multiple of the bars' {tfs.label(self.base_ns)} resolution; "
                    "drop it from --data.timeframes"
                )
            self.timeframes.append(self._build(name, tf_ns, bars, _lookback(name, tf_ns, lookback, span)))

    @property
    def names(self) -> list[str]:
        return [tf.name for tf in self.timeframes]

    @property
    def lookbacks(self) -> dict[str, int]:
        return {tf.name: tf.lookback for tf in self.timeframes}

    def _build(self, name: str, tf_ns: int, bars, lookback: int) -> _Timeframe:
        parts, visible, first_bin, offset = [], np.empty(len(bars), np.int64), np.empty(len(bars), np.int64), 0
        for i in range(len(bars.symbols)):
            block = bars.block(i)
            bins = tfs.resample(bars.times[block], *(getattr(bars, c)[block] for c in RAW_BAR_COLUMNS),
                                base_ns=self.base_ns, tf_ns=tf_ns)
            parts.append(np.column_stack([np.log(bins.open), np.log(bins.high), np.log(bins.low), np.log(bins.close),
                                          np.log1p(bins.volume)]))
            local = tfs.visible_bin(bins.last_row, block.stop - block.start)
            visible[block] = np.where(local >= 0, local + offset, -1)
            first_bin[block] = offset
            offset += len(bins.close)
        return _Timeframe(name, lookback, np.concatenate(parts) if parts else np.zeros((0, 5)), visible, first_bin)

    def base_positions(self, split: SplitData) -> np.ndarray:
        """The base bar of every row of ``split`` (global index into the bars); a row not in the bars is an error."""
        positions = np.empty(len(split), dtype=np.int64)
        stamps = split.timestamps.astype("datetime64[ns]").view(np.int64)
        for code, name in enumerate(split.symbols):
            rows = np.flatnonzero(split.symbol_codes == code)
            if not len(rows):
                continue
            if name == "" and len(self.symbols) == 1:  # a split without a symbol column: one series
                name = self.symbols[0]
            if name not in self.symbols:
                raise DataError(
                    f"symbol {name!r} of the {split.name} split has no raw bars; rebuild the split directory with "
                    "mlfactory prepare, which writes bars.parquet"
                )
            block = slice(int(self.bounds[self.symbols.index(name)]), int(self.bounds[self.symbols.index(name) + 1]))
            times = self.times[block]
            found = np.searchsorted(times, stamps[rows])
            ok = (found < len(times)) & (times[np.minimum(found, len(times) - 1)] == stamps[rows])
            if not ok.all():
                missing = split.timestamps[rows[int(np.argmin(ok))]]
                raise DataError(
                    f"the {split.name} split has a row of {name!r} at {missing} with no raw bar at that time; "
                    "the splits and the bars come from different data. Rebuild them together with mlfactory prepare"
                )
            positions[rows] = found + block.start
        return positions

    def has_history(self, positions: np.ndarray) -> np.ndarray:
        """True where every timeframe has ``lookback`` closed bins of the sample's symbol at its base bar."""
        ok = np.ones(len(positions), dtype=bool)
        for tf in self.timeframes:
            visible = tf.visible[positions]
            ok &= (visible >= 0) & (visible - tf.lookback + 1 >= tf.first_bin[positions])
        return ok

    def gather(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised windows of the samples at base bars ``positions``: ``{timeframe: (batch, lookback, 5)}``."""
        reference = self.log_close[positions][:, None]
        out = {}
        for tf in self.timeframes:
            index = tf.visible[positions][:, None] + np.arange(1 - tf.lookback, 1, dtype=np.int64)
            window = tf.bins[index]  # (batch, lookback, 5) float64: the batch's only copy
            prices = window[:, :, :4] - reference[:, :, None]
            if tf.lookback > 1:
                scale = np.diff(window[:, :, 3], axis=1).std(axis=1)
            else:  # one bin has no return of its own: use its range
                scale = window[:, 0, 1] - window[:, 0, 2]
            prices /= np.maximum(scale, _MIN_SCALE)[:, None, None]
            volume = window[:, :, 4:] - window[:, :, 4:].mean(axis=1, keepdims=True)
            out[tf.name] = np.concatenate([prices, volume], axis=2).astype(np.float32)
        return out


class MultiResolutionDataset(_RowDataset):
    """The rows of a split that have a full window at every timeframe; ``x`` is ``{timeframe: (batch, L_tf, 5)}``.

    Samples are identified by their split row, as in the tabular and sequence views, so predictions of
    all three join on ``row``.
    """

    def __init__(self, split: SplitData, bars: MultiResolutionBars, rows: np.ndarray | None = None) -> None:
        positions = bars.base_positions(split)
        valid = self.samples(
            split, np.flatnonzero(bars.has_history(positions)), rows, "lack a full multi-resolution window",
            f"no row of the {split.name} split has {bars.lookbacks} closed bars of history; use fewer or shorter "
            "--data.timeframes, a smaller --data.lookback or --data.span, or more bars before the split",
        )
        super().__init__(split, valid)
        self.bars = bars
        self._positions = positions

    def _gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return self.bars.gather(self._positions[rows])


def _parse(name: str) -> int:
    try:
        return tfs.parse(name)
    except DataError as err:
        raise DataError(f"{err} (in --data.timeframes)") from None


def _lookback(name: str, tf_ns: int, lookback: int | Mapping[str, int] | None, span: str) -> int:
    if lookback is None:
        span_ns = _parse(span)
        if span_ns < tf_ns:
            raise DataError(f"span {span!r} is shorter than one {name} bar; pass a longer --data.span or a --data.lookback")
        return int(span_ns // tf_ns)
    value = lookback.get(name) if isinstance(lookback, Mapping) else lookback
    if value is None:
        raise DataError(f"lookback gives no number of bars for timeframe {name!r}; add it or pass one number")
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise DataError(f"lookback for {name} must be a whole number of bars >= 1, got {value!r}")
    return int(value)


def _read_bars(data_dir: Path):
    """The base bars of a split directory, checked by prepare's reader (no repairs)."""
    from mlfactory.prepare.bars import load_bars

    if (data_dir / BARS_FILE).is_file():
        return load_bars(data_dir / BARS_FILE, fill_gaps=0)
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for split in SPLITS:
        path = data_dir / split_file(split)
        names = pq.read_schema(path).names
        missing = [c for c in (DATETIME_COLUMN, *RAW_BAR_COLUMNS) if c not in names]
        if missing:
            raise DataError(
                f"multi-resolution input needs raw bars, but {path} lacks {missing} and there is no {data_dir / BARS_FILE}; "
                "build the split directory with mlfactory prepare, or add the raw open/high/low/close/volume columns"
            )
        frames.append(pd.read_parquet(path, columns=[c for c in (DATETIME_COLUMN, SYMBOL_COLUMN, *RAW_BAR_COLUMNS) if c in names]))
    return load_bars(pd.concat(frames, ignore_index=True), fill_gaps=0)
