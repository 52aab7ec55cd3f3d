"""Sample weights: the average uniqueness of each label, optionally times its return attribution.

Uniqueness reuses ``mlfactory.data.synthetic.average_uniqueness``: the concurrency of a bar is the
number of labels whose life (bars ``t+1 .. end``) covers it, and a label weighs the mean of
``1 / concurrency`` over its life. Return attribution (Lopez de Prado, AFML 4.5.2) weighs a label by
``|sum over its life of r_u / c_u|``, the 1-bar log returns it spans, each shared among the ``c_u``
labels alive at that bar; it gives big moves more say and flat stretches less. Weights are normalised
to mean 1 within each split by ``normalise``.
"""

from __future__ import annotations

import numpy as np

from mlfactory.data.synthetic import average_uniqueness
from mlfactory.prepare import PrepareError


def concurrency(start: np.ndarray, end: np.ndarray, n_rows: int) -> np.ndarray:
    """Number of labels alive at each bar, a label living on bars ``start+1 .. end``."""
    events = np.bincount(start + 1, minlength=n_rows + 1) - np.bincount(end + 1, minlength=n_rows + 1)
    return np.cumsum(events[:n_rows])


def return_attribution(start: np.ndarray, end: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``|sum_{u in life} r_u / c_u|`` for each label (r: 1-bar log return, c: concurrency)."""
    n = len(close)
    c = concurrency(start, end, n)
    r = np.zeros(n)
    r[1:] = np.diff(np.log(close))
    share = np.zeros(n)
    np.divide(r, c, out=share, where=c > 0)
    cum = np.concatenate(([0.0], np.cumsum(share)))
    return np.abs(cum[end + 1] - cum[start + 1])


def sample_weights(rows: np.ndarray, end: np.ndarray, close: np.ndarray, *, attribution: bool) -> np.ndarray:
    """Unnormalised weights of the labels of ``rows`` (one symbol), whose lives end at ``end``."""
    weights = average_uniqueness(rows, end, len(close))
    if attribution:
        weights = weights * return_attribution(rows, end, close)
    return weights


def normalise(weights: np.ndarray, where: str) -> np.ndarray:
    """Weights scaled to mean 1."""
    mean = float(np.mean(weights)) if len(weights) else 0.0
    if not np.isfinite(mean) or mean <= 0:
        raise PrepareError(
            f"the sample weights of {where} are all zero (no price moved over any label's life); "
            "turn return attribution off or check the bars"
        )
    return weights / mean
