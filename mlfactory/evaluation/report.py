"""Everything the run record says about one split's predictions."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from mlfactory.data.split import SplitData
from mlfactory.evaluation.calibration import reliability
from mlfactory.evaluation.classification import classification_report
from mlfactory.evaluation.trading import signal_from_probs, trading_report


def evaluate_predictions(
    split: SplitData,
    rows: np.ndarray,
    probs: np.ndarray,
    horizon: int,
    calendar: Iterable[SplitData] | None = None,
) -> dict:
    """Classification metrics, calibration, and trading metrics when the split has forward returns.

    ``calendar``: the splits whose timestamps tell the market's calendar (when it trades) for the
    annualised Sharpe ratio; pass every split of the container, since they are one market and a
    test split of a few days cannot show weekends. None: this whole split (not only ``rows``).
    """
    labels = split.labels[rows]
    report = classification_report(probs, labels, split.weights[rows])
    report["calibration"] = reliability(probs, labels)
    if split.fwd_returns is not None:
        calendar_times = [s.timestamps for s in ([split] if calendar is None else calendar)]
        report["trading"] = trading_report(
            probs, split.fwd_returns[rows], split.timestamps[rows], horizon, calendar=calendar_times
        )
    return report


def equity_curve(probs: np.ndarray, fwd_returns: np.ndarray, timestamps: np.ndarray, horizon: int) -> pd.DataFrame:
    """The predicted signal's cumulative log return over non-overlapping ``horizon``-bar periods.

    The periods are the trading report's (:func:`mlfactory.evaluation.trading.trading_report`): per
    timestamp the mean signal return of all symbols (an equal-weight book), every ``horizon``-th
    timestamp. So the curve's largest fall from its peak is the report's ``max_drawdown``. Indexed
    by period time; columns ``strategy`` (the signal), ``long_all`` (every symbol held long, a
    reference) and ``drawdown`` (the strategy's fall from its running peak, counted from a start at 0).
    """
    signal = signal_from_probs(probs)
    frame = pd.DataFrame({"strategy": signal * fwd_returns, "long_all": fwd_returns})
    per_period = frame.groupby(np.asarray(timestamps)).mean().sort_index().iloc[::horizon]
    equity = per_period.cumsum()
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity["strategy"].to_numpy()]))[1:]
    equity["drawdown"] = peak - equity["strategy"].to_numpy()
    return equity
