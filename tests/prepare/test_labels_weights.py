"""Triple-barrier labels and uniqueness weights, hand-computed (mlfactory.prepare.labels, .weights)."""

from __future__ import annotations

import numpy as np
import pytest

from mlfactory.errors import DataError
from mlfactory.prepare.labels import triple_barrier_labels
from mlfactory.prepare.weights import average_uniqueness


def test_triple_barrier_hand_computed() -> None:
    logc = np.array([0.0, 0.01, 0.03, 0.0, -0.03, -0.03, -0.025, -0.03, 0.0])
    close = 100.0 * np.exp(logc)
    horizon = 2
    vol = np.full(len(close), 0.015 / np.sqrt(horizon))  # barrier at +-0.015 in log price
    vol[3] = np.nan
    label, fwd, end = triple_barrier_labels(close, vol, horizon)
    nan = np.nan
    np.testing.assert_array_equal(label, [1, 1, -1, nan, 0, 0, 1, nan, nan])
    np.testing.assert_array_equal(end, [2, 2, 3, -1, 6, 7, 8, -1, -1])
    np.testing.assert_allclose(fwd, [0.03, -0.01, -0.06, -0.03, 0.005, 0.0, 0.025, nan, nan], atol=1e-12)
    assert end.dtype.kind == "i"


def test_triple_barrier_uses_only_future_closes() -> None:
    rng = np.random.default_rng(1)
    close = 50 * np.exp(np.cumsum(0.01 * rng.standard_normal(300)))
    vol = np.full(300, 0.01)
    lab, _, end = triple_barrier_labels(close, vol, 10, barrier_k=1.5)
    past_changed = close.copy()
    past_changed[:100] *= 3.0  # scales close_t for t < 100 only, so rows >= 100 must not change
    lab2, _, end2 = triple_barrier_labels(past_changed, vol, 10, barrier_k=1.5)
    np.testing.assert_array_equal(lab[100:], lab2[100:])
    np.testing.assert_array_equal(end[100:], end2[100:])
    valid = ~np.isnan(lab)
    assert ((end[valid] > np.flatnonzero(valid)) & (end[valid] <= np.flatnonzero(valid) + 10)).all()


def test_triple_barrier_rejects_bad_input() -> None:
    with pytest.raises(DataError):
        triple_barrier_labels(np.ones(5), np.ones(4), 2)
    with pytest.raises(DataError):
        triple_barrier_labels(np.ones(5), np.ones(5), 0)
    with pytest.raises(DataError):
        triple_barrier_labels(np.array([1.0, -1.0, 1.0]), np.ones(3), 1)
    label, fwd, end = triple_barrier_labels(np.ones(3), np.ones(3), 5)  # horizon longer than the data
    assert np.isnan(label).all() and np.isnan(fwd).all() and (end == -1).all()


def test_average_uniqueness_hand_computed() -> None:
    # lives: A bars 1..3, B bar 2, C bar 4 -> concurrency 1, 2, 1, 1 on bars 1..4
    w = average_uniqueness(np.array([0, 1, 3]), np.array([3, 2, 4]), n_rows=6)
    np.testing.assert_allclose(w, [(1 + 0.5 + 1) / 3, 0.5, 1.0])
    # two labels overlapping on one bar: lives 1..2 and 2..3
    w = average_uniqueness(np.array([0, 1]), np.array([2, 3]), n_rows=4)
    np.testing.assert_allclose(w, [0.75, 0.75])
    assert average_uniqueness(np.array([], dtype=int), np.array([], dtype=int), 3).shape == (0,)
    with pytest.raises(DataError):
        average_uniqueness(np.array([2]), np.array([2]), 5)
    with pytest.raises(DataError):
        average_uniqueness(np.array([0]), np.array([5]), 5)
