"""The indicator catalogue: names, count, TA-Lib values on every timeframe, warm-up, determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import talib

from mlfactory.data.synthetic import generate_bars
from mlfactory.prepare import build_features
from mlfactory.prepare import timeframes as tfs
from mlfactory.prepare.features import BASE_ONLY, CATALOGUE, feature_names

NAME = re.compile(r"^[a-z]+(_[a-z]+)*(_\d+)*_(\d+min|\d+h)$")


@pytest.fixture(scope="module")
def features(bars_1m) -> pd.DataFrame:
    return build_features(bars_1m)


def names_of(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("datetime", "symbol", "filled")]


def test_about_180_named_features_over_nine_timeframes(features):
    names = names_of(features)
    per_timeframe = sum(len(e.names) for e in CATALOGUE)
    base_only = sum(len(e.names) for e in BASE_ONLY)
    assert (per_timeframe, base_only, len(names)) == (20, 10, 190)
    assert len(set(names)) == len(names) and all(NAME.match(n) for n in names)
    for name in ("rsi_14_5min", "macd_hist_12_26_9_1h", "bb_pctb_20_2_25min", "adx_14_4h", "stoch_k_14_3_3_15min",
                 "natr_14_30min", "mfi_14_10min", "volume_z_20_20min", "ret_1_1min", "ultosc_7_14_28_1min"):
        assert name in names
    assert names == feature_names(tfs.resolve(tfs.MINUTE_NS))
    assert (features[names].dtypes == np.float32).all()


def test_fewer_features_from_coarser_bars():
    bars = generate_bars(n_bars=3000, symbols=["X"])
    five = bars.iloc[::5].reset_index(drop=True)  # every fifth bar: a 5-minute series
    names = names_of(build_features(five))
    assert len(names) == 8 * 20 + 10 and names[0] == "ret_1_5min" and not any(n.endswith("_1min") for n in names)


def test_base_features_are_talib_on_the_bars(bars_1m, features):
    c, h, lo, v = (bars_1m[k].to_numpy() for k in ("close", "high", "low", "volume"))
    expected = {
        "rsi_14_1min": talib.RSI(c, 14),
        "adx_14_1min": talib.ADX(h, lo, c, 14),
        "natr_14_1min": talib.NATR(h, lo, c, 14),
        "mfi_14_1min": talib.MFI(h, lo, c, v, 14),
        "macd_hist_12_26_9_1min": talib.MACD(c, 12, 26, 9)[2] / c,
        "ret_20_1min": np.log(c / np.concatenate((np.full(20, np.nan), c[:-20]))),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(features[name], values.astype(np.float32), rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("tf", ["5min", "25min", "1h", "4h"])
def test_higher_timeframe_features_are_talib_on_closed_bins_held_until_the_next(bars_1m, features, tf):
    frame = bars_1m.set_index("datetime")
    k = tfs.parse(tf) // tfs.MINUTE_NS
    day = frame.index.floor("D")
    start = day + ((frame.index - day) // pd.Timedelta(minutes=k)) * pd.Timedelta(minutes=k)
    grouped = frame.groupby(start)
    bins = grouped.agg(close=("close", "last"), n=("close", "size"))
    # complete bins: every bar present, and the whole bin inside its day (the 25min stub at 23:45 is not)
    inside_day = bins.index + pd.Timedelta(minutes=k) <= bins.index.floor("D") + pd.Timedelta(days=1)
    bins = bins[(bins["n"] == k) & inside_day]
    rsi = pd.Series(talib.RSI(bins["close"].to_numpy(), 14), index=bins.index + pd.Timedelta(minutes=k - 1))
    # each bin's value belongs to the row of its last bar and stays until the next bin closes
    expected = rsi.reindex(frame.index).ffill().to_numpy()
    known = ~np.isnan(expected)
    assert known.sum() > 1000
    np.testing.assert_allclose(features[f"rsi_14_{tf}"].to_numpy()[known], expected[known].astype(np.float32),
                               rtol=1e-6)
    assert np.isnan(features[f"rsi_14_{tf}"].to_numpy()[~known]).all()


def test_every_feature_is_finite_after_the_warm_up(features):
    names = names_of(features)
    values = features[names].to_numpy()
    first = np.array([np.argmax(np.isfinite(values[:, j])) for j in range(len(names))])
    assert first.max() == 34 * 240 - 1  # MACD on 4h bars: 34 closed bins
    assert np.isfinite(values[first.max():]).all()


def test_features_are_deterministic_and_per_symbol(bars_1m):
    two = pd.concat([bars_1m, bars_1m.assign(symbol="COPY")], ignore_index=True)
    both = build_features(two)
    names = names_of(both)
    one = both.loc[both["symbol"] == "SYNA", names].to_numpy()
    copy = both.loc[both["symbol"] == "COPY", names].to_numpy()
    np.testing.assert_array_equal(one, copy)
    np.testing.assert_array_equal(one, build_features(bars_1m)[names].to_numpy())
