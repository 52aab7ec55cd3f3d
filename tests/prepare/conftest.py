"""Shared data for the prepare tests: 1-minute bars from the project's generator, and a perturbation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.synthetic import generate_bars

# The 4h features need 34 complete 4h bins (8,160 one-minute bars) before they are defined; 11,000 bars
# leave about 2,800 labelled rows, enough for three splits in well under a second per build.
N_BARS = 11_000


@pytest.fixture(scope="session")
def bars_1m() -> pd.DataFrame:
    """One symbol, 11,000 one-minute bars starting 2024-01-02 00:00 UTC."""
    return generate_bars(n_bars=N_BARS, symbols=["SYNA"], seed=0)


@pytest.fixture(scope="session")
def bars_2sym() -> pd.DataFrame:
    """Two symbols, 11,000 one-minute bars each."""
    return generate_bars(n_bars=N_BARS, symbols=["SYNA", "SYNB"], seed=1)


def perturb_after(bars: pd.DataFrame, t: pd.Timestamp, seed: int = 7) -> pd.DataFrame:
    """A copy of ``bars`` in which every bar strictly after ``t`` is different (still valid OHLCV).

    Prices after ``t`` follow a new random walk (one factor per bar on open/high/low/close, so the
    bar stays consistent), and volumes are redrawn; bars at or before ``t`` are untouched.
    """
    out = bars.copy()
    rng = np.random.default_rng(seed)
    later = (out["datetime"] > t).to_numpy()
    for symbol in out["symbol"].unique():
        rows = np.flatnonzero(later & (out["symbol"] == symbol).to_numpy())
        factor = np.exp(np.cumsum(rng.normal(0.0005, 0.003, len(rows))))
        for column in ("open", "high", "low", "close"):
            out.loc[out.index[rows], column] = out[column].to_numpy()[rows] * factor
        out.loc[out.index[rows], "volume"] = np.round(out["volume"].to_numpy()[rows] * rng.lognormal(0, 1, len(rows)))
    return out


@pytest.fixture(scope="session")
def perturb() -> Callable[..., pd.DataFrame]:
    return perturb_after
