"""The indicator catalogue: TA-Lib features on every timeframe, named ``{indicator}_{parameters}_{timeframe}``.

Each timeframe (the base resolution and each coarser one) gets the 20 indicators of ``CATALOGUE``;
the base timeframe also gets the 10 of ``BASE_ONLY``. With 1-minute bars and the nine default
timeframes that is 9 x 20 + 10 = 190 features. Indicators are computed by TA-Lib wherever TA-Lib has
them; the few plain ratios (close location, range, z-scores) are one line of numpy. Indicators in
price units (MACD, A/D oscillator) are divided by the close or the mean volume so that they compare
across symbols and years. Every indicator is causal: its value at a bar uses that bar and earlier
ones only; higher timeframes reach the base rows through closed-bar alignment (``timeframes.py``).
Features are stored as float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from mlfactory.prepare import timeframes as tfs
from mlfactory.prepare.bars import Bars, load_bars


@dataclass(frozen=True)
class Series:
    """The OHLCV arrays of one timeframe of one symbol (float64, contiguous)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @cached_property
    def log_return(self) -> np.ndarray:
        return np.log(_talib().ROCR(self.close, timeperiod=1))

    @cached_property
    def log_volume(self) -> np.ndarray:
        return np.log1p(self.volume)


@dataclass(frozen=True)
class Indicator:
    """One catalogue entry.

    Attributes:
        names: the feature names it yields, before the ``_{timeframe}`` suffix.
        compute: the columns, in ``names`` order, from one timeframe's bars.
        talib: the TA-Lib functions it calls (empty for a plain numpy ratio).
    """

    names: tuple[str, ...]
    compute: Callable[[Series], tuple[np.ndarray, ...]]
    talib: str = ""


def _talib():
    try:
        import talib
    except ImportError:  # pragma: no cover - a dependency of mlfactory
        from mlfactory.prepare import PrepareError

        raise PrepareError("mlfactory prepare needs TA-Lib: pip install 'ta-lib>=0.6'") from None
    return talib


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den; ``fill`` where den is 0, NaN where either side is NaN."""
    out = np.full(np.shape(num), fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _log_ret(period: int) -> Callable[[Series], tuple[np.ndarray]]:
    return lambda s: (np.log(_talib().ROCR(s.close, timeperiod=period)),)


def _vol(period: int) -> Callable[[Series], tuple[np.ndarray]]:
    return lambda s: (_talib().STDDEV(s.log_return, timeperiod=period, nbdev=1.0),)


def _macd(s: Series) -> tuple[np.ndarray, ...]:
    macd, signal, hist = _talib().MACD(s.close, fastperiod=12, slowperiod=26, signalperiod=9)
    return macd / s.close, signal / s.close, hist / s.close


def _bbands(s: Series) -> tuple[np.ndarray, ...]:
    upper, middle, lower = _talib().BBANDS(s.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    return _safe_div(s.close - lower, upper - lower, 0.5), _safe_div(upper - lower, middle, 0.0)


def _adx(s: Series) -> tuple[np.ndarray, ...]:
    t = _talib()
    return (
        t.ADX(s.high, s.low, s.close, timeperiod=14),
        t.PLUS_DI(s.high, s.low, s.close, timeperiod=14),
        t.MINUS_DI(s.high, s.low, s.close, timeperiod=14),
    )


def _stoch(s: Series) -> tuple[np.ndarray, ...]:
    return _talib().STOCH(s.high, s.low, s.close, fastk_period=14, slowk_period=3, slowk_matype=0,
                          slowd_period=3, slowd_matype=0)


def _volume_z(s: Series) -> tuple[np.ndarray]:
    t = _talib()
    mean = t.SMA(s.log_volume, timeperiod=20)
    std = t.STDDEV(s.log_volume, timeperiod=20, nbdev=1.0)
    return (_safe_div(s.log_volume - mean, std, 0.0),)


def _adosc(s: Series) -> tuple[np.ndarray]:
    t = _talib()
    osc = t.ADOSC(s.high, s.low, s.close, s.volume, fastperiod=3, slowperiod=10)
    return (_safe_div(osc, t.SMA(s.volume, timeperiod=10), 0.0),)


CATALOGUE: tuple[Indicator, ...] = (
    Indicator(("ret_1",), _log_ret(1), "ROCR"),
    Indicator(("ret_5",), _log_ret(5), "ROCR"),
    Indicator(("ret_20",), _log_ret(20), "ROCR"),
    Indicator(("vol_20",), _vol(20), "STDDEV"),
    Indicator(("rsi_14",), lambda s: (_talib().RSI(s.close, timeperiod=14),), "RSI"),
    Indicator(("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"), _macd, "MACD"),
    Indicator(("natr_14",), lambda s: (_talib().NATR(s.high, s.low, s.close, timeperiod=14),), "NATR"),
    Indicator(("bb_pctb_20_2", "bb_width_20_2"), _bbands, "BBANDS"),
    Indicator(("adx_14", "plus_di_14", "minus_di_14"), _adx, "ADX, PLUS_DI, MINUS_DI"),
    Indicator(("stoch_k_14_3_3", "stoch_d_14_3_3"), _stoch, "STOCH"),
    Indicator(("willr_14",), lambda s: (_talib().WILLR(s.high, s.low, s.close, timeperiod=14),), "WILLR"),
    Indicator(("cci_20",), lambda s: (_talib().CCI(s.high, s.low, s.close, timeperiod=20),), "CCI"),
    Indicator(("mfi_14",), lambda s: (_talib().MFI(s.high, s.low, s.close, s.volume, timeperiod=14),), "MFI"),
    Indicator(("volume_z_20",), _volume_z, "SMA, STDDEV"),
)
"""Indicators computed on every timeframe (20 features)."""

BASE_ONLY: tuple[Indicator, ...] = (
    Indicator(("ret_60",), _log_ret(60), "ROCR"),
    Indicator(("vol_60",), _vol(60), "STDDEV"),
    Indicator(("clv",), lambda s: (_safe_div(s.close - s.low, s.high - s.low, 0.5),)),
    Indicator(("hl_range",), lambda s: ((s.high - s.low) / s.close,)),
    Indicator(("bop",), lambda s: (_talib().BOP(s.open, s.high, s.low, s.close),), "BOP"),
    Indicator(("aroonosc_14",), lambda s: (_talib().AROONOSC(s.high, s.low, timeperiod=14),), "AROONOSC"),
    Indicator(("cmo_14",), lambda s: (_talib().CMO(s.close, timeperiod=14),), "CMO"),
    Indicator(
        ("ultosc_7_14_28",),
        lambda s: (_talib().ULTOSC(s.high, s.low, s.close, timeperiod1=7, timeperiod2=14, timeperiod3=28),),
        "ULTOSC",
    ),
    Indicator(("adosc_3_10",), _adosc, "ADOSC, SMA"),
    Indicator(("ema_dist_50",), lambda s: (s.close / _talib().EMA(s.close, timeperiod=50) - 1.0,), "EMA"),
)
"""Indicators computed on the base timeframe only (10 features)."""


def _entries(is_base: bool) -> tuple[Indicator, ...]:
    return CATALOGUE + BASE_ONLY if is_base else CATALOGUE


def feature_names(timeframes_ns: Sequence[int]) -> list[str]:
    """Feature column names for these timeframes (the first one is the base), in column order."""
    names = []
    for i, tf in enumerate(timeframes_ns):
        suffix = tfs.label(tf)
        names += [f"{name}_{suffix}" for entry in _entries(i == 0) for name in entry.names]
    return names


def timeframe_slices(timeframes_ns: Sequence[int]) -> list[tuple[str, slice]]:
    """Each timeframe's name and its columns in the feature array."""
    out, start = [], 0
    for i, tf in enumerate(timeframes_ns):
        width = sum(len(entry.names) for entry in _entries(i == 0))
        out.append((tfs.label(tf), slice(start, start + width)))
        start += width
    return out


def _compute(series: Series, is_base: bool) -> Iterator[np.ndarray]:
    """The timeframe's feature columns in catalogue order, one indicator at a time (bounded memory)."""
    for entry in _entries(is_base):
        values = entry.compute(series)
        if len(values) != len(entry.names):  # pragma: no cover - a catalogue bug
            raise AssertionError(f"indicator {entry.names} returned {len(values)} columns")
        yield from values


def symbol_features(
    times: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    timeframes_ns: Sequence[int],
) -> tuple[np.ndarray, dict[str, int]]:
    """Features of one symbol's time-sorted base bars: a (n_features, n_rows) float32 array.

    Returns the array (rows in warm-up are NaN) and, per higher timeframe, the number of incomplete
    bins that were dropped.
    """
    n = len(times)
    base_ns = int(timeframes_ns[0])
    out = np.empty((len(feature_names(timeframes_ns)), n), dtype=np.float32)
    dropped: dict[str, int] = {}
    row = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, tf in enumerate(timeframes_ns):
            if i == 0:
                series, position = Series(open_, high, low, close, volume), None
            else:
                bins = tfs.resample(times, open_, high, low, close, volume, base_ns=base_ns, tf_ns=int(tf))
                series = Series(bins.open, bins.high, bins.low, bins.close, bins.volume)
                position = tfs.visible_bin(bins.last_row, n)
                dropped[tfs.label(tf)] = bins.n_incomplete
            for column in _compute(series, i == 0):
                out[row] = column if position is None else tfs.align(column, position)
                row += 1
    return out, dropped


def build_features(
    source: Bars | pd.DataFrame | str | os.PathLike[str],
    *,
    timeframes: Sequence[str] | None = None,
    fill_gaps: int = 5,
) -> pd.DataFrame:
    """Every feature on every base row (warm-up rows NaN), beside ``datetime``, ``symbol`` and ``filled``.

    The unscaled features that ``prepare_splits`` selects rows from; useful to inspect or test them.
    """
    bars = source if isinstance(source, Bars) else load_bars(source, fill_gaps=fill_gaps)
    frames_ns = tfs.resolve(bars.resolution_ns, timeframes)
    names = feature_names(frames_ns)
    blocks = []
    for i in range(len(bars.symbols)):
        rows = bars.block(i)
        values, _ = symbol_features(
            bars.times[rows], bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows],
            bars.volume[rows], timeframes_ns=frames_ns,
        )
        blocks.append(values)
    frame = bars.to_frame()[["datetime", "symbol", "filled"]]
    features = pd.DataFrame(np.concatenate(blocks, axis=1).T, columns=names, index=frame.index)
    return pd.concat([frame, features], axis=1)
