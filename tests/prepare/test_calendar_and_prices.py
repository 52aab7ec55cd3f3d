"""Gap filling follows each symbol's own trading calendar; implausible prices and silent row drops are refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.data.synthetic import generate_bars
from mlfactory.prepare import PrepareError, load_bars, prepare_splits
from mlfactory.prepare import bars as bars_module

FAST = {"timeframes": ["5min", "15min"]}


def restamp(frame: pd.DataFrame, stamps: pd.DatetimeIndex) -> pd.DataFrame:
    """The generator's bars (one symbol) put on other timestamps: a daily, hourly or session series."""
    out = frame.iloc[: len(stamps)].copy()
    out["datetime"] = stamps[: len(out)]
    return out.reset_index(drop=True)


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return generate_bars(n_bars=6000, symbols=["EQ"], seed=3)


def session_minutes(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """1-minute bar starts of a 14:30-21:00 UTC session on each of ``days``."""
    return pd.DatetimeIndex(np.concatenate([pd.date_range(d + pd.Timedelta("14:30:00"), periods=390, freq="1min")
                                            for d in days]))


def test_daily_equity_bars_never_get_weekends_or_holidays_filled(source):
    days = pd.bdate_range("2023-01-02", periods=400, tz="UTC")
    holiday = days[52]  # a Wednesday without a bar
    assert holiday.day_name() == "Wednesday"
    bars = load_bars(restamp(source, days.delete(52)), fill_gaps=5)
    assert not bars.filled.any()  # the old rule filled every weekend: 1 Friday-Monday gap a week
    report = bars.report
    assert report["calendar"]["EQ"] == {"always_open": False, "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                                            "hours_utc": ["00:00-24:00"]}
    weekends = int((np.diff(days.delete(52).day_of_week) < 0).sum())
    assert report["gaps_kept"]["short_but_market_closed"] == weekends + 1  # and the holiday


def test_daily_crypto_bars_still_get_a_missing_day_filled(source):
    days = pd.date_range("2023-01-01", periods=400, freq="D", tz="UTC")
    bars = load_bars(restamp(source, days.delete([30, 100, 101])), fill_gaps=5)
    assert bars.report["calendar"]["EQ"]["always_open"]
    assert bars.report["repairs"]["gaps_filled"] == 2 and bars.report["repairs"]["bars_filled"] == 3


def test_session_minute_bars_fill_only_inside_the_session(source):
    days = pd.bdate_range("2024-03-04", periods=14, tz="UTC")
    stamps = session_minutes(days.delete(8))  # one holiday
    frame = restamp(source, stamps)
    gappy = frame.drop(index=[1000, 1001, 1002]).reset_index(drop=True)  # 3 minutes inside day 3's session
    for fill_gaps in (5, 3000):  # even a huge fill_gaps never bridges a night, a weekend or the holiday
        bars = load_bars(gappy, fill_gaps=fill_gaps)
        filled = pd.to_datetime(bars.times[bars.filled], utc=True)
        assert list(filled) == list(frame["datetime"].iloc[1000:1003])
        calendar = bars.report["calendar"]["EQ"]
        assert calendar["hours_utc"] == ["14:30-21:00"] and calendar["weekdays"] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_hourly_fx_fills_short_gaps_in_the_week_but_never_the_weekend(source):
    hours = pd.date_range("2024-01-07 22:00", "2024-03-01 21:00", freq="1h", tz="UTC")
    week = hours[~((hours.day_of_week == 5) | ((hours.day_of_week == 4) & (hours.hour >= 22))
                   | ((hours.day_of_week == 6) & (hours.hour < 22)))]
    frame = restamp(source, week)
    gappy = frame.drop(index=[100, 101]).reset_index(drop=True)  # two hours on a Thursday
    bars = load_bars(gappy, fill_gaps=60)  # 60 h would bridge every 48 h weekend under the old rule
    assert bars.filled.sum() == 2
    assert bars.report["calendar"]["EQ"]["weekdays"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sun"]
    assert bars.report["gaps_kept"]["count"] == bars.report["gaps_kept"]["short_but_market_closed"] == 7


def test_24_7_minute_bars_keep_the_old_filling_at_night_and_at_weekends():
    frame = generate_bars(n_bars=20_000, symbols=["BTC"], seed=5).drop(columns="symbol")
    stamps = frame["datetime"]
    night = np.flatnonzero((stamps.dt.day_of_week == 5) & (stamps.dt.hour == 3))[:4]  # Saturday 03:00
    dropped = [100, 101, *night, 9000, *range(12_000, 12_010)]
    bars = load_bars(frame.drop(index=dropped), fill_gaps=5)
    assert bars.report["calendar"]["series"] == {
        "always_open": True, "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "hours_utc": ["00:00-24:00"]}
    assert bars.report["repairs"]["bars_filled"] == 2 + 4 + 1 and bars.report["gaps_kept"]["count"] == 1


def test_prepare_on_session_bars_drops_nothing_unexpected_and_records_the_calendar(source, tmp_path):
    days = pd.bdate_range("2024-03-04", periods=15, tz="UTC")
    out = prepare_splits(restamp(source, session_minutes(days)), tmp_path / "out", horizons=(5,), **FAST)
    meta = json.loads((out / "scaling_metadata.json").read_text())
    assert meta["input"]["calendar"]["EQ"]["hours_utc"] == ["14:30-21:00"]
    dropped = meta["input"]["per_symbol"]["EQ"]["rows_dropped"]
    assert dropped["non_finite_features"] == 0 and dropped["missing_labels"] == 0
    assert dropped["warm_up_and_end"] > 100


# --------------------------------------------------------------------------------------------------
# Implausible prices and the drop-share limit
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e100, 1e50, 1e-20])
def test_one_implausible_bar_is_refused_by_name_not_dropped_silently(value, tmp_path, capsys):
    frame = generate_bars(n_bars=11_000, symbols=["SYNA", "SYNB"], seed=0)
    row = int(np.flatnonzero(frame["symbol"] == "SYNB")[5000])
    frame.loc[row, ["open", "high", "low", "close"]] = value
    frame.to_csv(tmp_path / "bars.csv", index=False)
    code = main(["prepare", "--input", str(tmp_path / "bars.csv"), "--output", str(tmp_path / "out"), "--no_progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    stamp = frame.loc[row, "datetime"]
    assert f"(SYNB {stamp})" in err and f"bars.csv line {row + 2}" in err
    assert f"{value:g}" in err and "orders of magnitude" in err
    assert not (tmp_path / "out").exists()


def test_a_price_or_volume_beyond_float_range_is_refused():
    frame = generate_bars(n_bars=300, symbols=["AAA"], seed=2)
    frame["volume"] = frame["volume"] * 1e200
    with pytest.raises(PrepareError, match=r"has volume .*e\+20\d, above 1e\+100"):
        load_bars(frame)


def test_non_finite_features_past_the_warm_up_fail_beyond_the_drop_share(monkeypatch, tmp_path):
    """The safety net below the price rule: with that rule switched off, a 1e50 bar makes MACD and NATR
    non-finite for many later bars, which used to shrink the splits silently."""
    frame = generate_bars(n_bars=4000, symbols=["SYNA"], seed=0)
    frame.loc[2000, ["open", "high", "low", "close"]] = 1e50
    monkeypatch.setattr(bars_module, "MAX_PRICE_JUMP", np.inf)
    with pytest.raises(PrepareError, match=r"the features step would drop [\d,]+ of [\d,]+ rows of symbol 'SYNA' "
                                           r"after the warm-up .*more than max_drop_share 1\.0%.*2024-01-03T09:2"):
        prepare_splits(frame, tmp_path / "out", **FAST)
    assert not (tmp_path / "out").exists()
    out = prepare_splits(frame, tmp_path / "out", max_drop_share=1.0, **FAST)  # accepted, and counted
    dropped = json.loads((out / "scaling_metadata.json").read_text())["input"]["per_symbol"]["SYNA"]["rows_dropped"]
    assert dropped["non_finite_features"] > 100


def test_max_drop_share_is_checked_before_any_work(tmp_path):
    frame = generate_bars(n_bars=300, symbols=["AAA"], seed=2)
    with pytest.raises(PrepareError, match="max_drop_share must be a number from 0 to 1, got 2"):
        prepare_splits(frame, tmp_path / "out", max_drop_share=2)


def test_mixed_naive_and_offset_timestamps_say_so(tmp_path):
    frame = generate_bars(n_bars=300, symbols=["AAA"], seed=2).drop(columns="symbol")
    text = frame["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S")
    text.iloc[40:] = text.iloc[40:] + "+00:00"
    frame.assign(datetime=text).to_csv(tmp_path / "bars.csv", index=False)
    with pytest.raises(PrepareError) as caught:
        load_bars(tmp_path / "bars.csv")
    message = str(caught.value)
    assert "mix time zone awareness" in message and "cannot parse" not in message
    assert "line 42 has an offset ('2024-01-02 00:40:00+00:00')" in message
    assert "line 2 has none ('2024-01-02 00:00:00')" in message and "Write every timestamp with its offset" in message
