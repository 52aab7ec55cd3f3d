"""The multi-resolution view: windows of closed raw bars per timeframe, aligned to the split rows, leak-free."""

from __future__ import annotations

import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.container import TimeSeriesDataContainer
from mlfactory.data.synthetic import generate_bars
from mlfactory.errors import DataError
from mlfactory.prepare import prepare_splits
from mlfactory.prepare.timeframes import TIMEFRAMES

TFS = ["5min", "15min", "1h"]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(n_bars=3000, symbols=("AAA", "BBB"), seed=5)


@pytest.fixture(scope="module")
def split_dir(bars, tmp_path_factory):
    return prepare_splits(bars, tmp_path_factory.mktemp("mr") / "splits", horizons=(5,), timeframes=["1min"])


@pytest.fixture(scope="module")
def container(split_dir):
    return TimeSeriesDataContainer.from_parquet_dir(split_dir, 5)


def test_batches_hold_one_window_per_timeframe_spanning_the_same_wall_clock(container):
    dataset = container.get_multi_resolution_bars("train", TFS)
    assert dataset.bars.lookbacks == {"5min": 96, "15min": 32, "1h": 8}  # 8h each by default
    batch = dataset.__getitems__(list(range(64)))
    assert sorted(batch["x"]) == sorted(TFS)
    for tf, n in dataset.bars.lookbacks.items():
        assert batch["x"][tf].shape == (64, n, 5) and batch["x"][tf].dtype.is_floating_point
        assert np.isfinite(batch["x"][tf].numpy()).all()
    split = container.split("train")
    np.testing.assert_array_equal(batch["y"].numpy(), split.labels[batch["row"].numpy()])
    custom = container.get_multi_resolution_bars("val", TFS, lookback={"5min": 4, "15min": 3, "1h": 2})
    assert {k: v.shape[1] for k, v in custom.__getitems__([0, 1])["x"].items()} == {"5min": 4, "15min": 3, "1h": 2}


def test_windows_are_the_last_closed_bins_normalised_within_the_window(container, bars):
    """Rebuild one sample's 15min window by hand with pandas from the raw bars."""
    dataset = container.get_multi_resolution_bars("test", ["15min"], lookback=6)
    split = container.split("test")
    i = len(dataset) // 2
    row = int(dataset.rows[i])
    t, symbol = split.identity(np.array([row])).iloc[0]
    own = bars[bars["symbol"] == symbol].set_index("datetime")
    # bins anchored at midnight, labelled by their start; one closes when its last 1-min bar does
    agg = own.resample("15min", origin="start_day").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    closed = agg[agg.index + pd.Timedelta("14min") <= t].tail(6)
    assert len(closed) == 6
    ref = np.log(own.loc[t, "close"])
    logp = np.log(closed[["open", "high", "low", "close"]].to_numpy()) - ref
    scale = np.diff(np.log(closed["close"].to_numpy())).std()
    logv = np.log1p(closed["volume"].to_numpy())
    expected = np.column_stack([logp / scale, logv - logv.mean()])
    got = dataset.__getitems__([i])["x"]["15min"][0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cut", [0.4, 0.75])
def test_changing_bars_after_t_leaves_every_window_at_or_before_t_unchanged(bars, split_dir, tmp_path, cut):
    """Prepare's leakage test for this view: perturb every bar after t, rebuild, compare windows."""
    times = bars["datetime"].sort_values().unique()
    t = times[int(len(times) * cut)]
    changed = bars.copy()
    later = changed["datetime"] > t
    rng = np.random.default_rng(1)
    factor = np.exp(rng.normal(0, 0.01, later.sum()))
    for c in ("open", "high", "low", "close"):
        changed.loc[later, c] *= factor
    changed.loc[later, "high"] = changed.loc[later, ["open", "high", "low", "close"]].max(axis=1)
    changed.loc[later, "low"] = changed.loc[later, ["open", "high", "low", "close"]].min(axis=1)
    changed.loc[later, "volume"] *= 3
    other = prepare_splits(changed, tmp_path / "changed", horizons=(5,), timeframes=["1min"])
    lookback = {"1min": 30, "5min": 12, "15min": 8, "1h": 4, "4h": 2}
    compared = 0
    for split in ("train", "val", "test"):
        a = TimeSeriesDataContainer.from_parquet_dir(split_dir, 5).get_multi_resolution_bars(
            split, list(lookback), lookback)
        b = TimeSeriesDataContainer.from_parquet_dir(other, 5).get_multi_resolution_bars(split, list(lookback), lookback)
        stamps = a.split.timestamps[a.rows.numpy()]
        before = np.flatnonzero(stamps <= np.datetime64(pd.Timestamp(t).tz_localize(None)))
        if len(before) == 0:
            continue
        np.testing.assert_array_equal(a.rows.numpy()[before], b.rows.numpy()[before])
        xa, xb = a.__getitems__(before), b.__getitems__(before)
        for tf in lookback:
            np.testing.assert_array_equal(xa["x"][tf].numpy(), xb["x"][tf].numpy(), err_msg=f"{split} {tf}")
        compared += len(before)
        after = np.flatnonzero(stamps > np.datetime64(pd.Timestamp(t).tz_localize(None)))
        if len(after):  # the perturbation is visible after t, so the comparison can fail
            assert not np.array_equal(a.__getitems__(after)["x"]["1min"].numpy(), b.__getitems__(after)["x"]["1min"].numpy())
    assert compared > 100


def test_all_nine_timeframes_are_available(container):
    lookback = 2
    dataset = container.get_multi_resolution_bars("test", list(TIMEFRAMES), lookback)
    batch = dataset.__getitems__([0, len(dataset) - 1])
    assert list(batch["x"]) == list(TIMEFRAMES)
    assert all(v.shape == (2, lookback, 5) for v in batch["x"].values())


def test_a_batch_is_the_only_per_sample_copy(container):
    dataset = container.get_multi_resolution_bars("train", TFS)
    tracemalloc.start()
    try:
        dataset.__getitems__(list(range(32)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_sample_window_bytes = sum(n * 5 * 4 for n in dataset.bars.lookbacks.values())
    # a few float64 temporaries of the batch itself, never anything sized by the split's samples
    assert peak < 32 * per_sample_window_bytes * 8
    assert peak < len(dataset) * per_sample_window_bytes / 10


def test_split_directories_without_bars_file_use_the_split_files_raw_columns(split_dir, tmp_path):
    copy = tmp_path / "nobars"
    shutil.copytree(split_dir, copy)
    (copy / "bars.parquet").unlink()
    container = TimeSeriesDataContainer.from_parquet_dir(copy, 5)
    with_file = TimeSeriesDataContainer.from_parquet_dir(split_dir, 5).get_multi_resolution_bars("test", TFS, 4)
    without = container.get_multi_resolution_bars("test", TFS, 4)
    # the split rows lack the purge/embargo gap bars, so a few windows differ, but the late ones do not
    last = [len(without) - 1]
    for tf in TFS:
        np.testing.assert_array_equal(without.__getitems__(last)["x"][tf].numpy(),
                                      with_file.__getitems__([len(with_file) - 1])["x"][tf].numpy())


def test_bad_requests_are_refused_with_the_fix(container, split_dir, tmp_path):
    with pytest.raises(DataError, match="unknown timeframe 'hourly'"):
        container.get_multi_resolution_bars("val", ["hourly"])
    with pytest.raises(DataError, match="whole number of bars >= 1, got 0"):
        container.get_multi_resolution_bars("val", ["1min"], lookback=0)
    with pytest.raises(DataError, match="no number of bars for timeframe '1h'"):
        container.get_multi_resolution_bars("val", ["5min", "1h"], lookback={"5min": 3})
    with pytest.raises(DataError, match="span '5min' is shorter than one 1h bar"):
        container.get_multi_resolution_bars("val", ["1h"], span="5min")
    with pytest.raises(DataError, match="closed bars of history"):
        container.get_multi_resolution_bars("val", ["4h"], lookback=500)
    copy = tmp_path / "noraw"
    shutil.copytree(split_dir, copy)
    (copy / "bars.parquet").unlink()
    for name in ("train", "val", "test"):
        path = copy / f"{name}_scaled.parquet"
        pd.read_parquet(path).drop(columns=["volume"]).to_parquet(path)
    with pytest.raises(DataError, match="needs raw bars"):
        TimeSeriesDataContainer.from_parquet_dir(copy, 5).get_multi_resolution_bars("val", TFS)
