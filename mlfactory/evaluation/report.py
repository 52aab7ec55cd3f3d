"""Everything the run record says about one split's predictions."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mlfactory.data.split import SplitData
from mlfactory.evaluation.calibration import reliability
from mlfactory.evaluation.classification import classification_report
from mlfactory.evaluation.trading import trading_report


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
