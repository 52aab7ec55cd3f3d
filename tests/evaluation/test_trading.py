"""Annualised Sharpe ratio from the data's observed calendar, against hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.container import TimeSeriesDataContainer
from mlfactory.evaluation.report import evaluate_predictions
from mlfactory.evaluation.trading import observed_calendar, trading_report

LONG = np.array([0.0, 0.0, 1.0])  # predicted class "up": signal +1
SHORT = np.array([1.0, 0.0, 0.0])  # predicted class "down": signal -1
WEEKS_PER_YEAR = 365.25 / 7


def _returns(n: int) -> np.ndarray:
    """A fixed, non-constant return series with a positive mean."""
    return 0.001 + 0.01 * np.sin(np.arange(n) * 1.7)


def _sharpe(per_period: np.ndarray, periods_per_year: float) -> float:
    return per_period.mean() / per_period.std(ddof=1) * math.sqrt(periods_per_year)


def test_daily_weekday_bars_annualise_by_the_weekdays_traded():
    # three weeks of Monday-Friday daily bars from Monday 2024-01-01: 15 bars, span 19 days -> 2 whole
    # weeks [Jan 1, Jan 15) holding 10 bars: 5 bars a week x 52.18 weeks = 260.9 a year, not 365.25
    times = pd.bdate_range("2024-01-01", "2024-01-19").to_numpy()
    assert len(times) == 15
    calendar = observed_calendar(times)
    assert calendar.method == "whole_weeks" and calendar.window_bars == 10 and calendar.window_days == 14
    assert calendar.bars_per_year == pytest.approx(5 * WEEKS_PER_YEAR)  # 260.89

    fwd = _returns(15)
    report = trading_report(np.tile(LONG, (15, 1)), fwd, times, horizon=1)
    assert report["sharpe_periods_per_year"] == pytest.approx(260.89, abs=0.01)
    assert report["sharpe_annualised"] == pytest.approx(_sharpe(fwd, 5 * WEEKS_PER_YEAR))
    assert report["sharpe_per_period"] == pytest.approx(fwd.mean() / fwd.std(ddof=1))
    assert report["sharpe_periods"] == 15
    # the old round-the-clock factor sqrt(365.25) overstated this by sqrt(7 / 5) = 1.18
    assert report["sharpe_annualised"] < _sharpe(fwd, 365.25) / 1.15

    # weekly horizon: every 5th bar, 260.9 / 5 = 52.18 periods a year
    weekly = trading_report(np.tile(LONG, (15, 1)), fwd, times, horizon=5)
    assert weekly["sharpe_periods_per_year"] == pytest.approx(WEEKS_PER_YEAR)
    assert weekly["sharpe_annualised"] == pytest.approx(_sharpe(fwd[::5], WEEKS_PER_YEAR))


def test_exchange_holidays_in_the_data_bring_daily_bars_to_about_252():
    # NYSE 2024: 262 weekdays less 10 holidays = 252 sessions
    holidays = pd.to_datetime(
        ["2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27",
         "2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25"]
    )
    times = pd.bdate_range("2024-01-01", "2024-12-31").difference(holidays).to_numpy()
    assert len(times) == 252
    calendar = observed_calendar(times)
    # span Jan 2 .. Dec 31 + 1 day = 365 days -> 52 whole weeks [Jan 2, Dec 31): 251 sessions
    assert calendar.method == "whole_weeks" and calendar.window_days == 52 * 7 and calendar.window_bars == 251
    assert calendar.bars_per_year == pytest.approx(251 / 52 * WEEKS_PER_YEAR)  # 251.9
    assert calendar.bars_per_year == pytest.approx(252, abs=1)


def test_fx_hourly_bars_with_weekend_gaps():
    # FX hours: Sunday 22:00 to Friday 21:00 UTC, 120 bars a week, three weeks, two symbols
    hours = pd.date_range("2024-01-07 22:00", "2024-01-26 21:00", freq="1h")
    open_hours = hours[~((hours.day_of_week == 5) | ((hours.day_of_week == 4) & (hours.hour >= 22))
                         | ((hours.day_of_week == 6) & (hours.hour < 22)))]
    assert len(open_hours) == 360
    calendar = observed_calendar(open_hours.to_numpy())
    # span Sun Jan 7 22:00 .. Fri Jan 26 22:00 = 19 days -> 2 whole weeks, 240 bars
    assert calendar.method == "whole_weeks" and calendar.window_bars == 240
    bars_per_year = 120 * WEEKS_PER_YEAR  # 6,261, about 24 x 5 x 52; the old code used 8,766
    assert calendar.bars_per_year == pytest.approx(bars_per_year)

    n = len(open_hours)
    times = np.concatenate([open_hours.to_numpy(), open_hours.to_numpy()])
    fwd_a, fwd_b = _returns(n), -0.5 * _returns(n)[::-1]
    probs = np.concatenate([np.tile(LONG, (n, 1)), np.tile(SHORT, (n, 1))])  # long A, short B
    report = trading_report(probs, np.concatenate([fwd_a, fwd_b]), times, horizon=4)
    book = ((fwd_a - fwd_b) / 2)[::4]  # equal-weight book, every 4th hour across the weekend gaps
    assert report["sharpe_periods"] == 90
    assert report["sharpe_periods_per_year"] == pytest.approx(bars_per_year / 4)
    assert report["sharpe_annualised"] == pytest.approx(_sharpe(book, bars_per_year / 4))
    assert report["annualisation"]["bars_per_year"] == pytest.approx(bars_per_year)


def test_minute_bars_around_the_clock():
    # eight days of 1-minute bars, every day: one whole week holds 10,080 bars -> 525,960 a year
    times = pd.date_range("2024-01-01", periods=8 * 1440, freq="1min").to_numpy()
    calendar = observed_calendar(times)
    assert calendar.method == "whole_weeks" and calendar.window_bars == 7 * 1440
    assert calendar.bars_per_year == pytest.approx(525_960)

    fwd = _returns(len(times))
    report = trading_report(np.tile(LONG, (len(times), 1)), fwd, times, horizon=20)
    assert report["sharpe_periods_per_year"] == pytest.approx(26_298)
    assert report["sharpe_annualised"] == pytest.approx(_sharpe(fwd[::20], 26_298))


def test_minute_bars_of_an_exchange_session():
    # 09:30-16:00 (390 one-minute bars) Monday-Friday for three weeks: 1,950 bars a week
    days = pd.bdate_range("2024-01-01", "2024-01-19")
    times = np.concatenate([pd.date_range(d + pd.Timedelta("9h30min"), periods=390, freq="1min") for d in days])
    calendar = observed_calendar(times)
    assert calendar.method == "whole_weeks" and calendar.window_bars == 2 * 1950
    assert calendar.bars_per_year == pytest.approx(1950 * WEEKS_PER_YEAR)  # 101,748, not 525,960
    fwd = _returns(len(times))
    report = trading_report(np.tile(LONG, (len(times), 1)), fwd, times, horizon=20)
    assert report["sharpe_periods_per_year"] == pytest.approx(1950 * WEEKS_PER_YEAR / 20)
    assert report["sharpe_annualised"] == pytest.approx(_sharpe(fwd[::20], 1950 * WEEKS_PER_YEAR / 20))


def test_short_calendars_say_what_they_assume():
    two_days = pd.date_range("2024-01-02", periods=2 * 1440, freq="1min").to_numpy()
    calendar = observed_calendar(two_days)
    assert calendar.method == "whole_days" and calendar.bars_per_year == pytest.approx(1440 * 365.25)
    hours = pd.date_range("2024-01-02 09:30", periods=60, freq="1min").to_numpy()
    assert observed_calendar(hours).method == "median_spacing"
    assert observed_calendar(hours).bars_per_year == pytest.approx(525_960)
    assert math.isnan(observed_calendar(hours[:1]).bars_per_year)
    report = trading_report(np.tile(LONG, (1, 1)), np.array([0.01]), hours[:1], horizon=1)
    assert math.isnan(report["sharpe_annualised"])


def test_a_short_test_split_is_annualised_by_the_calendar_of_all_splits():
    # weekday 1-minute bars: the test split alone (Tue-Wed) cannot show that weekends are closed
    days = pd.bdate_range("2024-01-01", "2024-01-19")
    minutes = pd.DatetimeIndex(np.concatenate([pd.date_range(d, periods=1440, freq="1min") for d in days]))
    test_rows = minutes[(minutes >= "2024-01-16") & (minutes < "2024-01-18")].to_numpy()
    fwd = _returns(len(test_rows))
    probs = np.tile(LONG, (len(test_rows), 1))
    alone = trading_report(probs, fwd, test_rows, horizon=20)
    assert alone["annualisation"]["method"] == "whole_days"
    assert alone["annualisation"]["bars_per_year"] == pytest.approx(1440 * 365.25)
    whole = trading_report(probs, fwd, test_rows, horizon=20, calendar=[minutes.to_numpy()])
    assert whole["annualisation"]["method"] == "whole_weeks"
    assert whole["annualisation"]["bars_per_year"] == pytest.approx(5 * 1440 * WEEKS_PER_YEAR)
    assert whole["sharpe_annualised"] == pytest.approx(alone["sharpe_annualised"] * math.sqrt(5 / 7))


def test_evaluate_predictions_reads_the_calendar_from_every_split(sample_dir):
    container = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5)
    test = container.split("test")
    rows = np.arange(len(test))
    probs = np.tile(LONG, (len(test), 1))
    own = evaluate_predictions(test, rows, probs, horizon=5)["trading"]["annualisation"]
    pooled = evaluate_predictions(test, rows, probs, 5, calendar=container.splits.values())["trading"]
    # the sample test split covers hours; all splits together cover more than a day of 1-minute bars
    assert own["method"] == "median_spacing"
    assert pooled["annualisation"]["method"] == "whole_days"
    assert pooled["annualisation"]["span_days"] > 1
    assert pooled["annualisation"]["bars_per_year"] == pytest.approx(525_960, rel=0.01)
    assert pooled["sharpe_method"] == "non-overlapping 5-bar periods; observed calendar (whole_days)"


def test_run_record_annualises_by_the_calendar_of_all_splits(sample_dir, make_trainer):
    import json

    from mlfactory import FactoryDataModule, create_model

    trainer = make_trainer(max_epochs=1)
    trainer.fit(create_model("logistic"), datamodule=FactoryDataModule(data_dir=str(sample_dir), horizon=5))
    trading = json.loads((Path(trainer.log_dir) / "metrics" / "evaluation_metrics.json").read_text())["test"]["trading"]
    # the test split alone spans hours (median_spacing); the run's calendar is all three splits
    assert trading["annualisation"]["method"] == "whole_days"
    assert trading["annualisation"]["span_days"] > 1
    assert trading["sharpe_periods_per_year"] == pytest.approx(525_960 / 5, rel=0.01)
    assert trading["sharpe_annualised"] == pytest.approx(
        trading["sharpe_per_period"] * math.sqrt(trading["sharpe_periods_per_year"])
    )
