"""Leakage tests that cannot pass by accident: change the future, rebuild, compare.

Each property is checked by rebuilding from perturbed bars (not by reading the code's own
bookkeeping), and each check is shown to have teeth: the perturbation does change what it may
change, and a deliberately leaky variant of the alignment fails the same comparison.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from mlfactory.prepare import build_features, prepare_splits
from mlfactory.prepare import timeframes as tfs
from mlfactory.prepare.labels import barrier_volatility, label_symbol

TIMEFRAMES = ("1min", "5min", "10min", "15min", "20min", "25min", "30min", "1h", "4h")
# Bars of the fixture (one bar a minute from 2024-01-02 00:00): 9007 is 06:07 on day 7, inside a bin
# of every timeframe; 9599 (15:59) is the last bar of a 4h bin and 9600 (16:00) the first of the next.
CUTS = {"inside every bin": 9007, "last bar of a 4h bin": 9599, "first bar of a 4h bin": 9600}


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("datetime", "symbol", "filled")]


def by_timeframe(names: list[str]) -> dict[str, list[str]]:
    groups = {tf: [n for n in names if n.endswith(f"_{tf}")] for tf in TIMEFRAMES}
    assert sum(len(g) for g in groups.values()) == len(names)
    return groups


def changed_columns(before: pd.DataFrame, after: pd.DataFrame, rows: np.ndarray) -> set[str]:
    names = feature_columns(before)
    a, b = before.loc[rows, names].to_numpy(), after.loc[rows, names].to_numpy()
    differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return {names[j] for j in np.flatnonzero(differs.any(axis=0))}


def read_split(path, split: str) -> pd.DataFrame:
    return pd.read_parquet(path / f"{split}_scaled.parquet")


# --------------------------------------------------------------------------------------------------
# Features: every row at or before t is unchanged when the bars after t change, for every timeframe
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_features_up_to_t_ignore_every_bar_after_t_on_every_timeframe(bars_1m, perturb, cut):
    t = bars_1m["datetime"].iloc[cut]
    before = build_features(bars_1m)
    after = build_features(perturb(bars_1m, t))
    early = (before["datetime"] <= t).to_numpy()
    groups = by_timeframe(feature_columns(before))

    assert changed_columns(before, after, early) == set()
    for tf, columns in groups.items():
        # the rows just before t hold real values on this timeframe, not NaN == NaN
        assert np.isfinite(before.loc[early, columns].to_numpy()[-60:]).all(), tf
        # and the perturbation reached this timeframe's features after t
        assert set(columns) & changed_columns(before, after, ~early), tf


@pytest.mark.parametrize(
    ("cut", "shift", "caught"),
    [
        (CUTS["inside every bin"], "to its first bar", TIMEFRAMES[1:]),
        # 15:58: every timeframe that divides 4h closes a bin at 16:00, so one bar early is one bar into the future
        (9598, "one bar early", ("5min", "10min", "15min", "20min", "30min", "1h", "4h")),
    ],
)
def test_the_comparison_catches_a_higher_timeframe_that_peeks_at_an_unfinished_bin(
    bars_1m, perturb, monkeypatch, cut, shift, caught
):
    real = tfs.resample

    def leaky(times, *arrays, base_ns, tf_ns):
        bins = real(times, *arrays, base_ns=base_ns, tf_ns=tf_ns)
        earlier = tf_ns // base_ns - 1 if shift == "to its first bar" else 1
        return dataclasses.replace(bins, last_row=bins.last_row - earlier)

    monkeypatch.setattr(tfs, "resample", leaky)
    t = bars_1m["datetime"].iloc[cut]
    before = build_features(bars_1m)
    after = build_features(perturb(bars_1m, t))
    leaked = changed_columns(before, after, (before["datetime"] <= t).to_numpy())
    groups = by_timeframe(feature_columns(before))
    for tf in caught:
        assert set(groups[tf]) & leaked, f"a leak on {tf} went unnoticed"
    assert not set(groups["1min"]) & leaked


def test_rebuilt_split_directory_is_identical_up_to_t(bars_1m, perturb, tmp_path):
    first = prepare_splits(bars_1m, tmp_path / "first")
    meta = json.loads((first / "scaling_metadata.json").read_text())
    test_start = pd.Timestamp(meta["split"]["test_start"])
    t = test_start + pd.Timedelta(minutes=157)  # inside the test split, inside a bin of every timeframe
    second = prepare_splits(perturb(bars_1m, t), tmp_path / "second")
    meta2 = json.loads((second / "scaling_metadata.json").read_text())

    for split in ("train", "val"):
        pd.testing.assert_frame_equal(read_split(first, split), read_split(second, split))
    assert meta2["center"] == meta["center"] and meta2["scale"] == meta["scale"]

    a, b = read_split(first, "test"), read_split(second, "test")
    pd.testing.assert_series_equal(a["datetime"], b["datetime"])
    names = meta["features"]
    early = (a["datetime"] <= t).to_numpy()
    assert early.sum() > 50 and (~early).sum() > 50
    np.testing.assert_array_equal(a.loc[early, names].to_numpy(), b.loc[early, names].to_numpy())
    assert (a.loc[~early, names].to_numpy() != b.loc[~early, names].to_numpy()).any(axis=0).mean() > 0.9
    # labels whose whole window (t+1 .. t+20) is at or before t are unchanged too
    settled = (a["datetime"] + pd.Timedelta(minutes=20) <= t).to_numpy()
    for h in (5, 20):
        np.testing.assert_array_equal(a.loc[settled, f"label_h{h}"], b.loc[settled, f"label_h{h}"])


# --------------------------------------------------------------------------------------------------
# Labels depend only on the bars after their row (the barrier width on the past, as the features do)
# --------------------------------------------------------------------------------------------------


def reference_labels(close: np.ndarray, vol: np.ndarray, horizon: int, k: float) -> np.ndarray:
    """Triple-barrier labels, one row at a time, reading only close[t] and close[t+1 .. t+H]."""
    out = np.full(len(close), np.nan)
    for t in range(len(close) - horizon):
        if not np.isfinite(vol[t]):
            continue
        width = k * vol[t] * np.sqrt(horizon)
        out[t] = 0.0
        for future in close[t + 1 : t + horizon + 1]:
            move = np.log(future / close[t])
            if move >= width and move > 0:
                out[t] = 1.0
                break
            if move <= -width and move < 0:
                out[t] = -1.0
                break
    return out


def test_barrier_volatility_is_the_std_of_the_last_returns(bars_1m):
    close = bars_1m["close"].to_numpy()
    r = np.diff(np.log(close))
    vol = barrier_volatility(close, 100)
    expected = np.full(len(close), np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(r, 100)
    expected[100:] = windows.std(axis=1)
    np.testing.assert_allclose(vol, expected, rtol=1e-7, atol=1e-12)


def test_labels_match_a_per_row_reference_and_the_written_splits(bars_1m, tmp_path):
    close = bars_1m["close"].to_numpy()
    vol = barrier_volatility(close, 100)
    out = prepare_splits(bars_1m, tmp_path / "splits", horizons=(5, 20), barrier_k=1.5)
    written = pd.concat([read_split(out, s) for s in ("train", "val", "test")], ignore_index=True)
    rows = np.searchsorted(bars_1m["datetime"].to_numpy(), written["datetime"].to_numpy())
    for h in (5, 20):
        expected = reference_labels(close, vol, h, 1.5)
        labels = label_symbol(close, [h], barrier_k=1.5, vol_window=100)[h]
        np.testing.assert_array_equal(labels.label, expected)
        np.testing.assert_array_equal(written[f"label_h{h}"].to_numpy(), expected[rows])
        np.testing.assert_allclose(
            written[f"fwd_return_h{h}"], np.log(close[rows + h] / close[rows]).astype(np.float32), rtol=1e-6
        )
        decided = np.flatnonzero(np.isfinite(labels.label))
        assert (labels.end[decided] > decided).all() and (labels.end[decided] <= decided + h).all()
    assert set(np.unique(written["label_h20"])) == {-1, 0, 1}


def test_a_label_moves_only_with_the_bars_inside_its_window(bars_1m):
    close = bars_1m["close"].to_numpy()
    i, h = 9000, 20

    def labels_of(c: np.ndarray) -> np.ndarray:
        return label_symbol(c, [h], barrier_k=1.0, vol_window=100)[h].label

    base = labels_of(close)
    later = close.copy()
    later[i + h + 1 :] *= np.exp(np.linspace(0.0, 0.5, len(close) - i - h - 1))
    np.testing.assert_array_equal(labels_of(later)[: i + 1], base[: i + 1])
    assert (labels_of(later)[i + 1 :] != base[i + 1 :]).any()
    for factor, expected in ((1.05, 1.0), (0.95, -1.0)):
        inside = close.copy()
        inside[i + 1 :] *= factor  # a jump right after the row decides its label at once
        assert labels_of(inside)[i] == expected
        np.testing.assert_array_equal(labels_of(inside)[: i - h], base[: i - h])


# --------------------------------------------------------------------------------------------------
# The scaler is fitted on the train rows alone
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_symbol_splits(bars_2sym, tmp_path_factory):
    return prepare_splits(bars_2sym, tmp_path_factory.mktemp("scaler") / "splits", horizons=(5, 20))


def test_scaler_statistics_equal_those_of_the_train_rows_alone(bars_2sym, two_symbol_splits):
    meta = json.loads((two_symbol_splits / "scaling_metadata.json").read_text())
    names = meta["features"]
    train = read_split(two_symbol_splits, "train")
    unscaled = train[["datetime", "symbol"]].merge(build_features(bars_2sym), on=["datetime", "symbol"], how="left")
    x = unscaled[names].to_numpy(dtype=np.float64)
    q25, median, q75 = np.percentile(x, [25, 50, 75], axis=0)
    iqr = np.where(q75 - q25 > 0, q75 - q25, 1.0)
    np.testing.assert_allclose([meta["center"][n] for n in names], median, rtol=1e-12, atol=0)
    np.testing.assert_allclose([meta["scale"][n] for n in names], iqr, rtol=1e-12, atol=0)
    # the file holds exactly those statistics applied to the train rows
    np.testing.assert_allclose(train[names].to_numpy(np.float64), (x - median) / iqr, rtol=1e-5, atol=1e-5)
    assert meta["train_range"] == [
        train["datetime"].min().isoformat(),
        train["datetime"].max().isoformat(),
    ]


def test_changing_val_and_test_bars_leaves_the_scaler_unchanged(bars_2sym, perturb, two_symbol_splits, tmp_path):
    meta = json.loads((two_symbol_splits / "scaling_metadata.json").read_text())
    val_start = pd.Timestamp(meta["split"]["val_start"])
    future = prepare_splits(perturb(bars_2sym, val_start - pd.Timedelta(minutes=1)), tmp_path / "future")
    changed = json.loads((future / "scaling_metadata.json").read_text())
    assert changed["center"] == meta["center"] and changed["scale"] == meta["scale"]
    assert not read_split(future, "val").equals(read_split(two_symbol_splits, "val"))
    # teeth: the same perturbation from inside train moves the statistics
    past = prepare_splits(perturb(bars_2sym, val_start - pd.Timedelta(hours=12)), tmp_path / "past")
    assert json.loads((past / "scaling_metadata.json").read_text())["center"] != meta["center"]


# --------------------------------------------------------------------------------------------------
# Purge and embargo: no train label window overlaps val or test
# --------------------------------------------------------------------------------------------------


def ns(values) -> np.ndarray:
    """Timestamps as int64 nanoseconds (UTC)."""
    return pd.DatetimeIndex(values).as_unit("ns").asi8


def test_no_train_or_val_label_window_reaches_the_next_split(bars_2sym, two_symbol_splits):
    meta = json.loads((two_symbol_splits / "scaling_metadata.json").read_text())
    purge, embargo = meta["purge_bars"], meta["embargo_bars"]
    assert purge == 20 and embargo == 20
    splits = {s: read_split(two_symbol_splits, s) for s in ("train", "val", "test")}
    cut = {s: pd.Timestamp(meta["split"][f"{s}_start"]).value for s in ("val", "test")}
    for symbol, bars in bars_2sym.groupby("symbol"):
        times = ns(bars["datetime"])
        for split, following in (("train", "val"), ("val", "test")):
            rows = ns(splits[split].loc[splits[split]["symbol"] == symbol, "datetime"])
            position = np.searchsorted(times, rows)
            window_end = times[position + purge]  # the last bar that any label of the row can read
            assert (window_end < cut[following]).all()
            assert (window_end < ns(splits[following]["datetime"]).min()).all()
            # the purge is tight: the last row kept is the last whose window ends before the cut
            assert position.max() == np.searchsorted(times, cut[following]) - purge - 1
        for split in ("val", "test"):
            rows = ns(splits[split].loc[splits[split]["symbol"] == symbol, "datetime"])
            assert np.searchsorted(times, rows.min()) == np.searchsorted(times, cut[split]) + embargo
