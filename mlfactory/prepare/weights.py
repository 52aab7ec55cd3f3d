"""Sample weights: the average uniqueness of each label, optionally times its return attribution.

Uniqueness: the concurrency of a bar is the number of labels whose life (bars ``t+1 .. end``) covers it, and a label weighs the mean of
``1 / concurrency`` over its life. Return attribution (Lopez de Prado, AFML 4.5.2) weighs a label by
``|sum over its life of r_u / c_u|``, the 1-bar log returns it spans, each shared among the ``c_u``
labels alive at that bar; it gives big moves more say and flat stretches less. Weights are normalised
to mean 1 within each split by ``normalise``.
"""

from __future__ import annotations

import numpy as np

from mlfactory.prepare import PrepareError


def average_uniqueness(start: np.ndarray, end: np.ndarray, n_rows: int) -> np.ndarray:
    """Average uniqueness of each label over its life ``[start+1, end]`` (bars of one symbol).

    Concurrency of a bar is the number of labels whose life covers it; a label's weight is the mean
    of ``1/concurrency`` over its life, so heavily overlapping labels count less (they share information).
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    if start.shape != end.shape or start.ndim != 1:
        raise PrepareError(
            f"start and end must be 1-D arrays of equal length, got {start.shape} and {end.shape}"
        )
    if start.size == 0:
        return np.zeros(0)
    if (start < 0).any() or (end <= start).any() or (end >= n_rows).any():
        raise PrepareError(f"each label life needs 0 <= start < end < n_rows={n_rows}")
    conc = concurrency(start, end, n_rows)
    inv = np.zeros(n_rows)
    np.divide(1.0, conc, out=inv, where=conc > 0)
    cum = np.concatenate(([0.0], np.cumsum(inv)))
    return (cum[end + 1] - cum[start + 1]) / (end - start)


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
