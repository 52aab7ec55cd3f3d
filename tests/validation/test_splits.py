"""Properties of the purged, embargoed splits, checked row by row against the label windows."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from mlfactory.errors import MLFactoryError
from mlfactory.validation import ROLES, CVError, cpcv, purged_kfold, walk_forward


def dev_rows(n_symbols: int = 3, n_bars: int = 240, offset: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by symbol, time-sorted within; symbols start at different times (``offset`` bars apart)."""
    base = np.datetime64("2024-01-01T00:00", "ns")
    times, codes = [], []
    for s in range(n_symbols):
        times.append(base + (np.arange(n_bars) + s * offset) * np.timedelta64(1, "m"))
        codes.append(np.full(n_bars, s, dtype=np.int32))
    return np.concatenate(times), np.concatenate(codes)


def label_window_hits(mask: np.ndarray, codes: np.ndarray, horizon: int) -> np.ndarray:
    """Brute force: rows whose next ``horizon`` rows of the same symbol include a ``mask`` row."""
    hit = np.zeros(len(mask), dtype=bool)
    for j in range(len(mask)):
        for step in range(1, horizon + 1):
            if j + step < len(mask) and codes[j + step] == codes[j] and mask[j + step]:
                hit[j] = True
    return hit


def after_hits(mask: np.ndarray, codes: np.ndarray, embargo: int) -> np.ndarray:
    """Brute force: rows with a ``mask`` row of the same symbol among the previous ``embargo`` rows."""
    hit = np.zeros(len(mask), dtype=bool)
    for j in range(len(mask)):
        for step in range(1, embargo + 1):
            if j - step >= 0 and codes[j - step] == codes[j] and mask[j - step]:
                hit[j] = True
    return hit


def check_purge_and_embargo(plan, codes: np.ndarray, horizon: int, embargo: int) -> None:
    for split in plan.splits:
        role = split.roles
        test, val = role == ROLES.index("test"), role == ROLES.index("val")
        train = role == ROLES.index("train")
        fitted = train | val
        # no row a model learns from has a label window that reaches a test row
        assert not (fitted & label_window_hits(test, codes, horizon)).any()
        # no training row's label reaches the validation tail either
        assert not (train & label_window_hits(val, codes, horizon)).any()
        # no row a model learns from sits within the embargo after a test row
        assert not (fitted & after_hits(test, codes, embargo)).any()
        # nothing is dropped without a reason: every purged row's window reaches test or val
        purged = role == ROLES.index("purged")
        assert (label_window_hits(test | val, codes, horizon)[purged]).all()
        embargoed = role == ROLES.index("embargoed")
        assert after_hits(test, codes, embargo)[embargoed].all()
        assert train.any() and test.any() and val.any()


@pytest.mark.parametrize(("n_groups", "k", "horizon", "embargo"),
                         [(4, 1, 3, None), (5, 2, 5, None), (6, 2, 2, 6), (6, 3, 7, 0)])
def test_cpcv_purge_embargo_and_paths(n_groups, k, horizon, embargo) -> None:
    times, codes = dev_rows()
    plan = cpcv(times, codes, horizon, n_groups=n_groups, n_test_groups=k, embargo=embargo)
    assert len(plan.splits) == comb(n_groups, k)
    assert plan.n_paths == k * comb(n_groups, k) // n_groups
    check_purge_and_embargo(plan, codes, horizon, horizon if embargo is None else embargo)
    for path in range(plan.n_paths):
        taken = plan.path_rows(path)
        rows = np.concatenate(list(taken.values()))
        # each path covers every development row exactly once, with an out-of-sample prediction
        assert np.array_equal(np.sort(rows), np.arange(len(times)))
        for split, split_rows in taken.items():
            assert (plan.splits[split].roles[split_rows] == ROLES.index("test")).all()
    # the paths use every split's test rows: each (group, split) pair exactly once
    used = sorted((g, int(s)) for p in plan.paths for g, s in enumerate(p))
    assert used == sorted((g, s.index) for s in plan.splits for g in s.test_groups)


def test_groups_are_periods_common_to_every_symbol() -> None:
    times, codes = dev_rows()
    plan = cpcv(times, codes, 3, n_groups=5, n_test_groups=2)
    for g in range(4):
        assert times[plan.groups == g].max() < times[plan.groups == g + 1].min()


@pytest.mark.parametrize(("n_splits", "window", "horizon"), [(3, None, 4), (5, None, 2), (4, 60, 5)])
def test_walk_forward_never_trains_on_the_future(n_splits, window, horizon) -> None:
    times, codes = dev_rows()
    plan = walk_forward(times, codes, horizon, n_splits=n_splits, train_window=window)
    assert len(plan.splits) == n_splits and plan.n_paths == 1
    check_purge_and_embargo(plan, codes, horizon, horizon)
    starts = []
    for split in plan.splits:
        fitted = np.isin(split.roles, [ROLES.index("train"), ROLES.index("val")])
        test_start = times[split.test].min()
        starts.append(test_start)
        assert times[fitted].max() < test_start
        # every label a model learns from ends before the test window starts (per symbol)
        assert not (fitted & label_window_hits(split.roles == ROLES.index("test"), codes, horizon)).any()
        if window is not None:
            assert len(np.unique(times[fitted | (split.roles == ROLES.index("purged"))])) <= window
    assert starts == sorted(starts)
    # expanding: each training period contains the previous one's rows
    if window is None:
        for a, b in zip(plan.splits, plan.splits[1:]):
            assert np.isin(a.train, np.concatenate([b.train, b.val, b.rows("purged")])).all()
    # the one path: every row after the first group, once
    rows = np.concatenate(list(plan.path_rows(0).values()))
    assert np.array_equal(np.sort(rows), np.flatnonzero(plan.groups > 0))


def test_purged_kfold_is_each_group_tested_once() -> None:
    times, codes = dev_rows()
    plan = purged_kfold(times, codes, 4, n_splits=5)
    assert [s.test_groups for s in plan.splits] == [(g,) for g in range(5)]
    assert plan.n_paths == 1
    check_purge_and_embargo(plan, codes, 4, 4)


@pytest.mark.parametrize(("call", "words"), [
    (lambda t, c: cpcv(t, c, 3, n_groups=4, n_test_groups=4), "fewer than the groups"),
    (lambda t, c: cpcv(t, c, 3, n_groups=5, n_test_groups=0), "at least 1"),
    (lambda t, c: cpcv(t[:30], c[:30], 1, n_groups=40, n_test_groups=2), "more than the 30 distinct timestamps"),
    (lambda t, c: cpcv(t, c, 80, n_groups=6, n_test_groups=2), "not longer than the label horizon 80"),
    (lambda t, c: walk_forward(t, c, 3, n_splits=0), "at least 1 test window"),
    (lambda t, c: walk_forward(t, c, 10, n_splits=3, train_window=5), "train_window 5"),
    (lambda t, c: cpcv(t, c, 3, embargo=-1), "--cv.embargo -1"),
    (lambda t, c: walk_forward(t, c, 3, val_fraction=0), "--cv.val_fraction 0"),
])
def test_bad_settings_say_what_to_do(call, words) -> None:
    times, codes = dev_rows()
    with pytest.raises(CVError, match=words) as caught:
        call(times, codes)
    assert isinstance(caught.value, MLFactoryError) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("scheme", "sizes", "horizon", "embargo"), [
    ("cpcv", (5, 2), 4, None), ("cpcv", (6, 3), 2, 5), ("kfold", (4,), 6, 0), ("walk_forward", (4,), 3, None),
])
def test_folds_parquet_holds_purge_and_embargo(scheme, sizes, horizon, embargo, tmp_path) -> None:
    """The record's folds.parquet alone (split, datetime, symbol, role) shows the rules: per symbol in time
    order, no row a split fits on has a label window (next ``horizon`` rows) reaching its test rows, none
    sits within the embargo after a test row, and no training row's window reaches the validation tail."""
    import pandas as pd

    from mlfactory.data.split import SplitData
    from mlfactory.validation.record import folds_table

    times, codes = dev_rows()
    if scheme == "cpcv":
        plan = cpcv(times, codes, horizon, n_groups=sizes[0], n_test_groups=sizes[1], embargo=embargo)
    elif scheme == "kfold":
        plan = purged_kfold(times, codes, horizon, n_splits=sizes[0], embargo=embargo)
    else:
        plan = walk_forward(times, codes, horizon, n_splits=sizes[0], embargo=embargo)
    n = len(times)
    dev = SplitData("development", np.zeros((n, 1), np.float32), np.zeros(n, np.int64), np.ones(n, np.float32), times,
                    codes, ("A", "B", "C"), None, np.searchsorted(codes, codes).astype(np.int64))
    folds_table(plan, dev).to_parquet(tmp_path / "folds.parquet", index=False)
    folds = pd.read_parquet(tmp_path / "folds.parquet")
    assert len(folds) == n * len(plan.splits)
    embargo = horizon if embargo is None else embargo
    for (split, _), rows in folds.groupby(["split", "symbol"], observed=True):
        role = rows.sort_values("datetime")["role"].astype(str).to_numpy()
        fitted, test = np.isin(role, ["train", "val"]), role == "test"
        for t in np.flatnonzero(fitted):
            assert not test[t + 1:t + 1 + horizon].any(), f"split {split}: a fitted row's label reaches the test rows"
            assert not test[max(0, t - embargo):t].any(), f"split {split}: a fitted row inside the embargo"
        for t in np.flatnonzero(role == "train"):
            assert (role[t + 1:t + 1 + horizon] != "val").all(), f"split {split}: a training label reaches val"
    assert set(folds["role"].astype(str)) >= {"train", "val", "test", "purged"}
