"""Triple-barrier labels per horizon.

For a row ``t`` and horizon ``H`` (in base bars): the barriers sit at
``close_t * exp(+-k * vol_t * sqrt(H))``, where ``vol_t`` is the standard deviation of the last
``vol_window`` 1-bar log returns (TA-Lib ``STDDEV``, bars up to and including ``t``). The closes of
bars ``t+1 .. t+H`` decide: +1 if the upper barrier is reached first, -1 if the lower one is, 0 if
neither by ``t+H`` (the vertical barrier). ``fwd_return_h{H}`` is ``log(close[t+H] / close[t])``.
Rows whose ``t+H`` lies past the end of the data, or whose volatility is still warming up, get no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlfactory.prepare import PrepareError


@dataclass(frozen=True)
class Labels:
    """Labels of one symbol for one horizon, on every base row.

    Attributes:
        label: (n,) float64 -1/0/+1, NaN where there is no label.
        fwd_return: (n,) float64 log return over the horizon, NaN past the end.
        end: (n,) int64 the row of the bar that decided the label (-1 where there is no label).
    """

    label: np.ndarray
    fwd_return: np.ndarray
    end: np.ndarray


def triple_barrier_labels(
    close: np.ndarray, volatility: np.ndarray, horizon: int, barrier_k: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triple-barrier labels for ONE symbol's close series; vectorised over rows, looping over 1..horizon.

    Barriers at ``close_t * exp(+-barrier_k * vol_t * sqrt(horizon))``; the closes at ``t+1..t+horizon``
    decide: +1 if the upper is reached first (close >= upper, and above close_t), -1 if the lower is
    reached first, 0 if neither by ``t+horizon``. Returns ``(label, fwd_return, end_index)``: label is
    NaN where ``t+horizon`` is past the end or vol_t is NaN; ``fwd_return = log(close[t+horizon]/close[t])``
    (NaN past the end); ``end_index`` is the bar that decided the label (-1 where the label is NaN).
    """
    close = np.asarray(close, dtype=np.float64)
    vol = np.asarray(volatility, dtype=np.float64)
    if close.ndim != 1 or vol.shape != close.shape:
        raise PrepareError(
            f"close and volatility must be 1-D arrays of equal length, got {close.shape} and {vol.shape}"
        )
    if int(horizon) != horizon or horizon < 1:
        raise PrepareError(f"horizon must be a positive integer, got {horizon}")
    if not np.isfinite(barrier_k) or barrier_k <= 0:
        raise PrepareError(f"barrier_k must be finite and > 0, got {barrier_k}")
    if (~np.isfinite(close) | (close <= 0)).any():
        raise PrepareError("close must be finite and > 0 everywhere")
    horizon = int(horizon)
    n = close.shape[0]
    m = max(n - horizon, 0)  # rows whose vertical barrier lies inside the data
    logc = np.log(close)
    label = np.full(n, np.nan)
    fwd = np.full(n, np.nan)
    end = np.full(n, -1, dtype=np.int64)
    if m == 0:
        return label, fwd, end

    width = barrier_k * vol[:m] * np.sqrt(horizon)
    valid = np.isfinite(width) & (width >= 0)
    lab = np.zeros(m)
    end_m = np.full(m, -1, dtype=np.int64)
    decided = ~valid
    rows = np.arange(m)
    for h in range(1, horizon + 1):
        move = logc[h : h + m] - logc[:m]
        up = ~decided & (move >= width) & (move > 0)
        down = ~decided & (move <= -width) & (move < 0)
        lab[up] = 1.0
        lab[down] = -1.0
        hit = up | down
        end_m[hit] = rows[hit] + h
        decided |= hit
    open_rows = ~decided  # valid rows not touched: vertical barrier
    end_m[open_rows] = rows[open_rows] + horizon
    lab[~valid] = np.nan
    end_m[~valid] = -1
    label[:m] = lab
    end[:m] = end_m
    fwd[:m] = logc[horizon:] - logc[:m]
    return label, fwd, end


def barrier_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling standard deviation of 1-bar log returns over ``window`` bars, up to and including each bar."""
    import talib

    log_return = np.log(talib.ROCR(np.ascontiguousarray(close, dtype=np.float64), timeperiod=1))
    return talib.STDDEV(log_return, timeperiod=int(window), nbdev=1.0)


def label_symbol(
    close: np.ndarray, horizons: Sequence[int], *, barrier_k: float, vol_window: int
) -> dict[int, Labels]:
    """Triple-barrier labels of one symbol's closes for each horizon."""
    vol = barrier_volatility(close, vol_window)
    out = {}
    for horizon in horizons:
        label, fwd, end = triple_barrier_labels(close, vol, int(horizon), barrier_k)
        out[int(horizon)] = Labels(label, fwd, end)
    return out
