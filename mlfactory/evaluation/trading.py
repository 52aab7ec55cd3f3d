"""Trading metrics of the predicted signal against the forward return ``fwd_return_h{H}``.

The signal is ``+1`` when the predicted class is up, ``-1`` when down, ``0`` when neutral; its
return on a sample is ``signal * fwd_return`` (a log return over the next H bars).

Sharpe ratio: a period is one timestamp (the signal returns of all symbols at that time are
averaged: an equal-weight book). Consecutive periods overlap by H - 1 bars, so Sharpe and drawdown
use every H-th period (non-overlapping H-bar returns). The per-period Sharpe ratio is annualised by
``sqrt(bars_per_year / H)``, with ``bars_per_year`` read from the data's own calendar
(:func:`observed_calendar`): the bars actually present per whole week, times 365.25 / 7 weeks a
year. So daily weekday bars give about 261 (about 252 when the data holds exchange holidays), FX
hours about 6,261, 1-minute bars traded around the clock 525,960; nothing assumes a market that
never closes. docs/metrics.md has the worked examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 365.25
SECONDS_PER_DAY = 24 * 3600


@dataclass(frozen=True)
class BarCalendar:
    """How many bars a year the data trades, and what that figure was read from.

    Attributes:
        bars_per_year: bars in one year of this market (NaN when fewer than 2 timestamps).
        method: ``whole_weeks`` (bars counted over whole weeks: weekends, nights and holidays in the
            data are honoured), ``whole_days`` (less than a week of data: bars per whole day x 365.25,
            i.e. it assumes the market trades every day of the week), ``median_spacing`` (less than a
            day: 365.25 days / the median bar spacing, i.e. around the clock), or ``none``.
        window_start: first timestamp of the counting window (ISO 8601, UTC).
        window_days: length of the counting window in days (whole weeks or whole days).
        window_bars: distinct timestamps inside the window.
        span_days: the whole calendar, first to last timestamp plus one bar spacing, in days.
        bar_seconds: median spacing of consecutive distinct timestamps.
    """

    bars_per_year: float
    method: str
    window_start: str | None
    window_days: float
    window_bars: int
    span_days: float
    bar_seconds: float

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (the run record's ``annualisation``)."""
        return asdict(self)


def observed_calendar(timestamps: np.ndarray | Iterable[np.ndarray]) -> BarCalendar:
    """Bars per year of the market whose bar times are ``timestamps`` (one array or several, e.g. every split).

    The distinct timestamps of all arrays (all symbols, all splits: one market) are counted inside
    the longest run of whole weeks that starts at the first one, so a market closed at weekends,
    at night or on holidays is annualised by the bars it really trades. With under a week of data
    the weekly pattern is unknowable: whole days are counted instead (every day assumed to trade),
    and under a day, the median spacing (around the clock). Gaps that are not market closures,
    such as the purge between splits, make the figure (and the Sharpe ratio) slightly lower.
    """
    arrays = [timestamps] if isinstance(timestamps, np.ndarray) else list(timestamps)
    if not arrays:
        return BarCalendar(float("nan"), "none", None, 0.0, 0, 0.0, 0.0)
    ns = np.unique(np.concatenate([np.asarray(a).astype("datetime64[ns]").astype(np.int64) for a in arrays]))
    if len(ns) < 2:
        return BarCalendar(float("nan"), "none", None, 0.0, int(len(ns)), 0.0, 0.0)
    bar_ns = float(np.median(np.diff(ns)))
    span_days = float(ns[-1] - ns[0] + bar_ns) / 1e9 / SECONDS_PER_DAY
    start = str(pd.Timestamp(ns[0]).isoformat())
    if span_days < 1:
        per_year = DAYS_PER_YEAR * SECONDS_PER_DAY / (bar_ns / 1e9)
        return BarCalendar(per_year, "median_spacing", start, span_days, int(len(ns)), span_days, bar_ns / 1e9)
    unit_days, method = (7, "whole_weeks") if span_days >= 7 else (1, "whole_days")
    window_days = unit_days * int(span_days // unit_days)
    end_ns = int(ns[0]) + window_days * SECONDS_PER_DAY * 10**9
    bars = int(np.searchsorted(ns, end_ns, side="left"))  # distinct timestamps in [first, first + window)
    per_year = bars / window_days * DAYS_PER_YEAR
    return BarCalendar(per_year, method, start, float(window_days), bars, span_days, bar_ns / 1e9)


def signal_from_probs(probs: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1 from the predicted class (0 down, 1 neutral, 2 up)."""
    return probs.argmax(axis=1).astype(np.int64) - 1


def trading_report(
    probs: np.ndarray,
    fwd_returns: np.ndarray,
    timestamps: np.ndarray,
    horizon: int,
    calendar: np.ndarray | Iterable[np.ndarray] | None = None,
) -> dict:
    """Hit rate, signal mean return, annualised Sharpe, maximum drawdown and the information coefficient.

    ``calendar``: the bar times that define the market's calendar for annualisation (e.g. the
    timestamps of every split of the data: a test split of a few days says little about weekends);
    None uses ``timestamps``.
    """
    signal = signal_from_probs(probs)
    active = signal != 0
    hit_rate = float((np.sign(fwd_returns[active]) == signal[active]).mean()) if active.any() else float("nan")
    strategy = signal * fwd_returns
    per_period = pd.Series(strategy).groupby(timestamps).mean().sort_index()
    spaced = per_period.iloc[::horizon].to_numpy()
    bars = observed_calendar(timestamps if calendar is None else calendar)
    periods_per_year = bars.bars_per_year / horizon
    std = spaced.std(ddof=1) if len(spaced) > 1 else float("nan")
    sharpe_per_period = float(spaced.mean() / std) if std and std > 0 else float("nan")
    score = probs[:, 2] - probs[:, 0]
    return {
        "n_samples": int(len(fwd_returns)),
        "active_fraction": float(active.mean()),
        "hit_rate": hit_rate,
        "mean_return": float(strategy.mean()),
        "mean_return_active": float(strategy[active].mean()) if active.any() else float("nan"),
        "sharpe_annualised": float(sharpe_per_period * np.sqrt(periods_per_year)),
        "sharpe_per_period": sharpe_per_period,
        "sharpe_periods": int(len(spaced)),
        "sharpe_periods_per_year": float(periods_per_year),
        "sharpe_method": f"non-overlapping {horizon}-bar periods; observed calendar ({bars.method})",
        "max_drawdown": max_drawdown(spaced),
        "annualisation": {"horizon_bars": horizon, "periods_per_year": float(periods_per_year), **bars.as_dict()},
        **information_coefficient(score, fwd_returns, timestamps),
    }


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall of the cumulative (log) return from its running peak, as a positive number."""
    if len(returns) == 0:
        return float("nan")
    equity = np.concatenate([[0.0], np.cumsum(returns)])
    return float((np.maximum.accumulate(equity) - equity).max())


def information_coefficient(score: np.ndarray, fwd_returns: np.ndarray, timestamps: np.ndarray) -> dict:
    """Spearman correlation of the score with the forward return, per calendar day (UTC).

    Returns the mean, the standard deviation and ICIR = mean / std over the days with at least 3
    samples, and the pooled IC over all samples.
    """
    frame = pd.DataFrame({"score": score, "ret": fwd_returns, "day": pd.to_datetime(timestamps).floor("D")})
    daily = [
        _spearman(group["score"].to_numpy(), group["ret"].to_numpy())
        for _, group in frame.groupby("day")
        if len(group) >= 3
    ]
    daily = np.asarray([ic for ic in daily if np.isfinite(ic)])
    mean = float(daily.mean()) if len(daily) else float("nan")
    std = float(daily.std(ddof=1)) if len(daily) > 1 else float("nan")
    return {
        "ic_pooled": _spearman(score, fwd_returns),
        "ic_mean": mean,
        "ic_std": std,
        "icir": float(mean / std) if std and std > 0 else float("nan"),
        "ic_periods": int(len(daily)),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])

