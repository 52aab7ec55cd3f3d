"""How much of a study's best result is luck: the deflated Sharpe ratio and the probability of backtest overfitting.

Both work on per-period strategy returns (:func:`period_returns`: the signal's return per timestamp,
every horizon-th period, so the periods do not overlap), with Sharpe ratios per period, not annualised.

**Deflated Sharpe ratio** (Bailey and López de Prado, "The Deflated Sharpe Ratio", 2014). The best of N
trials has an inflated Sharpe ratio even when no trial has skill. The expected maximum Sharpe ratio of
N skill-less trials whose Sharpe ratios vary with variance V is

    SR0 = sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e))),   g = 0.5772... (Euler-Mascheroni)

with Z the standard normal quantile, and the deflated Sharpe ratio is the probability that the best
trial's true Sharpe ratio exceeds SR0, from its T returns with skewness g3 and kurtosis g4 (not excess):

    DSR = Phi((SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2))

**Probability of backtest overfitting** (Bailey, Borwein, López de Prado and Zhu, "The Probability of
Backtest Overfitting", 2015), by combinatorially symmetric cross-validation (CSCV): the T x N matrix of
the trials' returns is cut into S equal blocks of consecutive periods; for every choice of S/2 blocks as
in-sample (the rest out-of-sample), the trial best in-sample is ranked out-of-sample, w = rank / (N + 1)
(rank 1 the worst), and its logit l = ln(w / (1 - w)). PBO is the share of choices with l <= 0: how
often the in-sample winner is no better than the median trial out-of-sample.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio: mean / sample standard deviation (ddof 1); NaN when undefined."""
    returns = np.asarray(returns, dtype=np.float64)
    if len(returns) < 2:
        return float("nan")
    std = returns.std(ddof=1)
    return float(returns.mean() / std) if std > 0 else float("nan")


def moments(returns: np.ndarray) -> tuple[float, float]:
    """Skewness and kurtosis (not excess; 3 for a normal) from the population moments of ``returns``."""
    x = np.asarray(returns, dtype=np.float64)
    centred = x - x.mean()
    m2 = float(np.mean(centred**2))
    if m2 <= 0:
        return float("nan"), float("nan")
    return float(np.mean(centred**3) / m2**1.5), float(np.mean(centred**4) / m2**2)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected largest Sharpe ratio of ``n_trials`` skill-less trials whose Sharpe ratios have ``variance``."""
    if n_trials < 2:
        raise ValueError(f"the expected maximum needs at least 2 trials, got {n_trials}")
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n_trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e)))


def deflated_sharpe(best_returns: np.ndarray, trial_sharpes: list[float]) -> dict[str, Any]:
    """The deflated Sharpe ratio of the best trial's per-period returns, deflated by every trial's Sharpe ratio.

    Returns the formula's inputs with the result: ``sharpe`` (SR), ``n_trials`` (N), ``variance`` (V of
    the trials' Sharpe ratios), ``expected_max_sharpe`` (SR0), ``n_periods`` (T), ``skewness``,
    ``kurtosis`` and ``dsr``; ``dsr`` is None (with a ``reason``) when it is undefined.

    >>> result = deflated_sharpe(np.array([0.01, 0.02, -0.01, 0.03, 0.0]), [0.5, 0.3, 0.1])
    >>> round(result["sharpe"], 4), round(result["expected_max_sharpe"], 4), round(result["dsr"], 4)
    (0.6325, 0.1706, 0.8141)
    """
    sharpes = np.asarray([s for s in trial_sharpes if s is not None and math.isfinite(s)], dtype=np.float64)
    returns = np.asarray(best_returns, dtype=np.float64)
    sr = sharpe(returns)
    skew, kurt = moments(returns) if len(returns) else (float("nan"), float("nan"))
    result: dict[str, Any] = {
        "formula": "DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)); "
                   "SR0 = sqrt(V) ((1 - g) Z(1 - 1/N) + g Z(1 - 1/(N e)))",
        "sharpe": sr, "n_trials": int(len(sharpes)), "variance": None, "expected_max_sharpe": None,
        "n_periods": int(len(returns)), "skewness": skew, "kurtosis": kurt, "dsr": None,
    }
    if len(sharpes) < 2 or not math.isfinite(sr):
        result["reason"] = "needs at least 2 trials with a defined Sharpe ratio and a best trial with one"
        return result
    variance = float(sharpes.var(ddof=1))
    sr0 = expected_max_sharpe(len(sharpes), variance)
    denominator = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    result.update(variance=variance, expected_max_sharpe=sr0)
    if not denominator > 0 or len(returns) < 2:
        result["reason"] = "the best trial's returns give no positive variance term"
        return result
    result["dsr"] = _NORMAL.cdf((sr - sr0) * math.sqrt(len(returns) - 1) / math.sqrt(denominator))
    return result


def pbo_cscv(matrix: np.ndarray, n_blocks: int = 8, statistic: Literal["sharpe", "mean"] = "sharpe"
             ) -> dict[str, Any]:
    """Probability of backtest overfitting of a T x N matrix of per-period returns (rows: periods, columns: trials).

    ``n_blocks`` (S, even) consecutive blocks of T // S periods each (the last T mod S periods are left
    out); every choice of S/2 blocks is an in-sample set. ``statistic`` ranks the trials: the per-period
    Sharpe ratio, or the mean return. Returns ``pbo``, the logits and the inputs.

    Trial 0 wins the first half and loses the second, trial 1 earns nothing: whichever half is
    in-sample, its winner is the worse trial out of sample.

    >>> pbo_cscv(np.array([[1, 0], [1, 0], [-1, 0], [-1, 0]], dtype=float), n_blocks=2, statistic="mean")["pbo"]
    1.0
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"CSCV needs a (periods, trials) matrix with at least 2 trials, got shape {m.shape}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"CSCV needs an even number of blocks, got {n_blocks}")
    size = m.shape[0] // n_blocks
    if size < (2 if statistic == "sharpe" else 1):
        raise ValueError(f"{m.shape[0]} periods are too few for {n_blocks} blocks")
    blocks = m[: size * n_blocks].reshape(n_blocks, size, m.shape[1])
    n_trials = m.shape[1]
    logits = []
    for chosen in itertools.combinations(range(n_blocks), n_blocks // 2):
        rest = [b for b in range(n_blocks) if b not in chosen]
        in_sample = _performance(blocks[list(chosen)].reshape(-1, n_trials), statistic)
        out_sample = _performance(blocks[rest].reshape(-1, n_trials), statistic)
        best = int(np.argmax(np.nan_to_num(in_sample, nan=-np.inf)))
        others = np.delete(out_sample, best)
        value = out_sample[best]
        rank = 1 + np.sum(others < value) + 0.5 * np.sum(others == value)  # ties share the average rank
        w = rank / (n_trials + 1)
        logits.append(math.log(w / (1 - w)))
    logits_arr = np.asarray(logits)
    return {
        "pbo": float(np.mean(logits_arr <= 0)),
        "n_blocks": n_blocks, "block_periods": int(size), "n_periods": int(m.shape[0]), "n_trials": int(n_trials),
        "n_combinations": len(logits), "statistic": statistic,
        "logit_mean": float(logits_arr.mean()), "logits": [round(x, 6) for x in logits],
    }


def _performance(returns: np.ndarray, statistic: str) -> np.ndarray:
    if statistic == "mean":
        return returns.mean(axis=0)
    std = returns.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, returns.mean(axis=0) / std, np.nan)


def period_returns(probs: np.ndarray, fwd_returns: np.ndarray, timestamps: np.ndarray, horizon: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The signal's return per period, as the run record's Sharpe ratio counts it (evaluation/trading.py).

    Per timestamp the mean of ``signal * fwd_return`` over the symbols, then every ``horizon``-th
    timestamp (non-overlapping returns). Returns ``(timestamps as int64 nanoseconds, returns)``.
    """
    import pandas as pd

    from mlfactory.evaluation.trading import signal_from_probs

    finite = np.isfinite(fwd_returns)
    strategy = signal_from_probs(probs[finite]) * fwd_returns[finite]
    per_period = pd.Series(strategy).groupby(np.asarray(timestamps)[finite]).mean().sort_index().iloc[::horizon]
    index = pd.to_datetime(per_period.index)
    return np.asarray(index.asi8, dtype=np.int64), per_period.to_numpy(dtype=np.float64)
