"""Resampling with one fixed anchor, complete bins only, and closed-bar alignment to the base rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlfactory.prepare import PrepareError
from mlfactory.prepare import timeframes as tfs

MIN = tfs.MINUTE_NS


def minute_bars(n: int, start: str = "2024-01-02 00:00", drop: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    times = pd.date_range(start, periods=n, freq="min", tz="UTC").as_unit("ns").asi8
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    bars = {
        "times": times,
        "open": open_,
        "high": np.maximum(open_, close) * 1.0005,
        "low": np.minimum(open_, close) * 0.9995,
        "close": close,
        "volume": rng.uniform(1, 10, n).round(),
    }
    keep = np.setdiff1d(np.arange(n), drop)
    return {k: v[keep] for k, v in bars.items()}


def resample(bars: dict[str, np.ndarray], tf: str, base: str = "1min") -> tfs.Bins:
    return tfs.resample(
        bars["times"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"],
        base_ns=tfs.parse(base), tf_ns=tfs.parse(tf),
    )


def test_names_parse_and_print_canonically():
    assert [tfs.label(tfs.parse(n)) for n in tfs.TIMEFRAMES] == list(tfs.TIMEFRAMES)
    assert tfs.parse("60min") == tfs.parse("1H") == tfs.parse("1h") == 60 * MIN
    assert tfs.label(tfs.parse("5m")) == "5min" and tfs.label(tfs.parse("1d")) == "1d"
    for bad in ("5 weeks", "0min", "fast", ""):
        with pytest.raises(PrepareError, match="unknown timeframe"):
            tfs.parse(bad)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("1min", tfs.TIMEFRAMES),
        ("5min", ("5min", "10min", "15min", "20min", "25min", "30min", "1h", "4h")),
        ("2min", ("2min", "10min", "20min", "30min", "1h", "4h")),
        ("1h", ("1h", "4h")),
        ("1d", ("1d",)),
    ],
)
def test_default_timeframes_are_the_nine_at_or_above_the_base(base, expected):
    assert [tfs.label(t) for t in tfs.resolve(tfs.parse(base))] == list(expected)


def test_requested_timeframes_always_include_the_base_and_refuse_finer_ones():
    assert [tfs.label(t) for t in tfs.resolve(tfs.parse("1min"), ["4h", "5min"])] == ["1min", "5min", "4h"]
    with pytest.raises(PrepareError, match="'1min' cannot be built from 5min bars"):
        tfs.resolve(tfs.parse("5min"), ["1min"])
    with pytest.raises(PrepareError, match="'25min' cannot be built from 10min bars"):
        tfs.resolve(tfs.parse("10min"), ["25min"])


@pytest.mark.parametrize("tf", ["5min", "15min", "1h", "4h"])
def test_complete_bins_equal_pandas_resampling(tf):
    bars = minute_bars(3 * 24 * 60 + 17)
    bins = resample(bars, tf)
    frame = pd.DataFrame({k: v for k, v in bars.items() if k != "times"},
                         index=pd.to_datetime(bars["times"], utc=True))
    expected = frame.resample(tf, origin="epoch").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    expected = expected.iloc[:-1] if len(frame) % (tfs.parse(tf) // MIN) else expected  # the last bin is cut short
    np.testing.assert_array_equal(bins.start, expected.index.as_unit("ns").asi8)
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(bins, column), expected[column].to_numpy(), rtol=1e-12)


def test_25min_bins_restart_at_every_midnight_and_never_drift():
    bars = minute_bars(4 * 24 * 60)
    bins = resample(bars, "25min")
    day = bins.start // tfs.DAY_NS
    minutes_of_day = (bins.start % tfs.DAY_NS) // MIN
    expected = np.arange(0, 24 * 60 - 24, 25)  # 00:00, 00:25, ..., 23:20: 57 full bins a day
    assert len(expected) == 57
    for d in np.unique(day):
        np.testing.assert_array_equal(minutes_of_day[day == d], expected)
    # the 15-minute stub 23:45-24:00 is never a bin: one dropped per day
    assert bins.n_incomplete == 4


def test_incomplete_bins_are_dropped_gaps_ends_and_a_late_start():
    # starts at 00:07 (the first 5min and 1h bins are partial); bar 00:32 is missing; ends at 02:58
    bars = minute_bars(172, start="2024-01-02 00:07", drop=(25,))
    five = resample(bars, "5min")
    starts = (five.start % tfs.DAY_NS) // MIN
    assert 5 not in starts and 30 not in starts  # 00:05 starts before the data; 00:30 lacks 00:32
    assert 10 in starts and 35 in starts and 170 in starts and 175 not in starts  # 02:55-03:00 is cut short
    assert five.n_incomplete == 3
    hourly = resample(bars, "1h")
    np.testing.assert_array_equal((hourly.start % tfs.DAY_NS) // MIN, [60])  # 00:00 and 02:00 are partial
    assert hourly.close[0] == bars["close"][bars["times"] == hourly.start[0] + 59 * MIN][0]


def test_a_row_sees_a_bin_only_from_the_bar_that_closes_it():
    bars = minute_bars(600)
    n = len(bars["times"])
    for tf in ("5min", "25min", "1h"):
        bins = resample(bars, tf)
        position = tfs.visible_bin(bins.last_row, n)
        bin_close = bins.start + tfs.parse(tf)
        row_close = bars["times"] + MIN
        seen = position >= 0
        # the bin a row sees has closed by the time the row's bar closes ...
        assert (bin_close[position[seen]] <= row_close[seen]).all()
        # ... and the next complete bin has not
        has_next = seen & (position + 1 < len(bins.start))
        assert (bin_close[position[has_next] + 1] > row_close[has_next]).all()
        assert (~seen).sum() == bins.last_row[0]  # rows before the first closed bin see nothing
        aligned = tfs.align(bins.close, position)
        assert np.isnan(aligned[~seen]).all() and (aligned[seen] == bins.close[position[seen]]).all()
