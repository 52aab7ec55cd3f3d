"""Trading metrics of the predicted signal against the forward return ``fwd_return_h{H}``.

The signal is ``+1`` when the predicted class is up, ``-1`` when down, ``0`` when neutral; its
return on a sample is ``signal * fwd_return`` (a log return over the next H bars).

Annualisation: a period is one timestamp (the signal returns of all symbols at that time are
averaged). Consecutive periods overlap by H - 1 bars, so Sharpe and drawdown use every H-th period
(non-overlapping H-bar returns), and the Sharpe ratio is scaled by ``sqrt(periods_per_year / H)``,
with ``periods_per_year`` = one calendar year (365.25 days) divided by the median bar spacing: the
markets here trade around the clock. For a market open 252 days x 6.5 hours, rescale by
``sqrt((252 * 6.5) / (365.25 * 24))``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def signal_from_probs(probs: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1 from the predicted class (0 down, 1 neutral, 2 up)."""
    return probs.argmax(axis=1).astype(np.int64) - 1


def trading_report(probs: np.ndarray, fwd_returns: np.ndarray, timestamps: np.ndarray, horizon: int) -> dict:
    """Hit rate, signal mean return, annualised Sharpe, maximum drawdown and the information coefficient."""
    signal = signal_from_probs(probs)
    active = signal != 0
    hit_rate = float((np.sign(fwd_returns[active]) == signal[active]).mean()) if active.any() else float("nan")
    strategy = signal * fwd_returns
    per_period = pd.Series(strategy).groupby(timestamps).mean().sort_index()
    spaced = per_period.iloc[::horizon].to_numpy()
    bar_seconds = _median_spacing_seconds(per_period.index.to_numpy())
    periods_per_year = SECONDS_PER_YEAR / bar_seconds if bar_seconds else float("nan")
    std = spaced.std(ddof=1) if len(spaced) > 1 else float("nan")
    sharpe = float(spaced.mean() / std * np.sqrt(periods_per_year / horizon)) if std and std > 0 else float("nan")
    score = probs[:, 2] - probs[:, 0]
    return {
        "n_samples": int(len(fwd_returns)),
        "active_fraction": float(active.mean()),
        "hit_rate": hit_rate,
        "mean_return": float(strategy.mean()),
        "mean_return_active": float(strategy[active].mean()) if active.any() else float("nan"),
        "sharpe_annualised": sharpe,
        "max_drawdown": max_drawdown(spaced),
        "annualisation": {"periods_per_year": periods_per_year, "horizon_bars": horizon},
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


def _median_spacing_seconds(times: np.ndarray) -> float:
    if len(times) < 2:
        return 0.0
    return float(np.median(np.diff(times.astype("datetime64[ns]").astype(np.int64))) / 1e9)
