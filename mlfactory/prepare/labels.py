"""Triple-barrier labels per horizon, reusing ``mlfactory.data.synthetic.triple_barrier_labels``.

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

from mlfactory.data.synthetic import triple_barrier_labels


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
