"""Everything the run record says about one split's predictions."""

from __future__ import annotations

import numpy as np

from mlfactory.data.container import SplitData
from mlfactory.evaluation.calibration import reliability
from mlfactory.evaluation.classification import classification_report
from mlfactory.evaluation.trading import trading_report


def evaluate_predictions(split: SplitData, rows: np.ndarray, probs: np.ndarray, horizon: int) -> dict:
    """Classification metrics, calibration, and trading metrics when the split has forward returns."""
    labels = split.labels[rows]
    report = classification_report(probs, labels, split.weights[rows])
    report["calibration"] = reliability(probs, labels)
    if split.fwd_returns is not None:
        report["trading"] = trading_report(probs, split.fwd_returns[rows], split.timestamps[rows], horizon)
    return report
