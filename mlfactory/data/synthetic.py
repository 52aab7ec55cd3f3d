"""Deterministic synthetic 1-minute bars with a planted, learnable relation, and the sample data built from them.

Why: the project needs an embedded default data set and test data that a working model can learn
from, plus a twin in which nothing is learnable, so that a model scoring above chance on the twin
exposes a leak. Both are made by the real pipeline: synthetic bars -> ``mlfactory prepare``
(:func:`make_sample_splits`), so every default run exercises the path users' own bars take.

Planted relation (``signal=True``):
    Each symbol carries a persistent latent drift state ``z_t``, an AR(1) process with
    ``phi = 0.985`` (half-life about 46 bars) and unit stationary variance. The 1-bar log return is
    ``r_t = signal_strength * sigma * z_t + sigma * eps_t`` with i.i.d. Gaussian ``eps_t``, so the
    expected return follows ``z``. ``z`` is observable in past bars in two ways: through recent
    returns (momentum, since ``z`` persists) and through the shape of every bar, whose wicks are
    skewed by ``z`` (``z > 0`` lengthens the lower wick and shortens the upper one, which raises the
    close location in the bar). ``signal=False`` removes only the drift (``signal_strength`` is
    ignored): bars keep the same ``z`` footprint in their wicks, but the sign of every return is
    independent of the past, so no feature can predict the direction of the label.

Volatility ``sigma`` is constant per symbol (drawn from the symbol's generator) in both variants, so
that the share of "no barrier touched" labels is predictable only through the estimation noise of
the barrier volatility (docs/data.md, "The embedded sample data"). Volume is log-normal, larger on
bars with large moves, and carries no direction.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlfactory.errors import DataError

__all__ = ["SAMPLE_BARS", "SAMPLE_TIMEFRAMES", "default_data_dir", "generate_bars", "make_sample_splits"]

SAMPLE_VERSION = "sample-v2"
SAMPLE_BARS = 20_000
"""Bars per symbol of the embedded sample data: 13.9 days, of which the 4h features' warm-up takes 5.7."""
SAMPLE_TIMEFRAMES: tuple[str, ...] | None = None
"""Timeframes of the embedded sample data: None, prepare's nine defaults (190 features)."""
SAMPLE_HORIZONS: tuple[int, ...] = (5, 20)
SAMPLE_EMBARGO = 10

DEFAULT_SIGNAL_STRENGTH = 0.18
"""Drift per unit of ``z`` in units of the 1-bar volatility (tuned for 0.40-0.50 balanced accuracy)."""

_Z_PHI = 0.985  # persistence of the latent drift state
_WICK_SKEW = 0.5  # how strongly z skews the wicks (log-scale factor per unit z)


# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------


def _ar1(innovations: np.ndarray, phi: float, x0: float, block: int = 512) -> np.ndarray:
    """x_t = phi * x_{t-1} + innovations_t with x_{-1} = x0, vectorised in blocks (no per-row loop)."""
    if not 0.0 < phi < 1.0:
        raise ValueError(f"phi must lie in (0, 1), got {phi}")
    block = max(1, min(block, int(30.0 / -np.log(phi))))  # keeps phi^-block far from overflow
    n = innovations.shape[0]
    out = np.empty(n, dtype=np.float64)
    j = np.arange(block, dtype=np.float64)
    pow_pos = phi ** (j + 1.0)  # phi^(j+1): weight of the carried state
    pow_neg = phi ** (-j)  # phi^-j: discount used inside the cumulative sum
    prev = float(x0)
    for b0 in range(0, n, block):
        e = innovations[b0 : b0 + block]
        m = e.shape[0]
        # x_{b0+j} = phi^(j+1) prev + sum_{s<=j} phi^(j-s) e_s = phi^(j+1) prev + phi^j cumsum(phi^-s e_s)
        acc = np.cumsum(e * pow_neg[:m]) * (pow_pos[:m] / phi)
        out[b0 : b0 + m] = pow_pos[:m] * prev + acc
        prev = out[b0 + m - 1]
    return out


def _symbol_bars(
    rng: np.random.Generator, n_bars: int, drift_strength: float
) -> dict[str, np.ndarray]:
    """OHLCV arrays for one symbol; every random draw happens whatever drift_strength is."""
    sigma = 0.001 * float(np.exp(0.25 * rng.standard_normal()))
    price0 = 100.0 * float(np.exp(0.5 * rng.standard_normal()))
    z = _ar1(
        np.sqrt(1.0 - _Z_PHI**2) * rng.standard_normal(n_bars), _Z_PHI, float(rng.standard_normal())
    )
    eps = rng.standard_normal(n_bars)
    wick_up = rng.exponential(0.6, n_bars)
    wick_down = rng.exponential(0.6, n_bars)
    vol_noise = rng.standard_normal(n_bars)

    log_ret = sigma * (drift_strength * z + eps)
    log_close = np.log(price0) + np.cumsum(log_ret)
    log_open = np.concatenate(([np.log(price0)], log_close[:-1]))
    skew = np.exp(_WICK_SKEW * z)
    log_high = np.maximum(log_open, log_close) + sigma * wick_up / skew
    log_low = np.minimum(log_open, log_close) - sigma * wick_down * skew
    volume = np.round(1000.0 * np.exp(0.4 * vol_noise + 0.3 * np.abs(eps)))
    return {
        "open": np.exp(log_open),
        "high": np.exp(log_high),
        "low": np.exp(log_low),
        "close": np.exp(log_close),
        "volume": volume.astype(np.float64),
    }


def generate_bars(
    *,
    n_bars: int = 8000,
    symbols: Sequence[str] = ("SYNA", "SYNB", "SYNC"),
    signal: bool = True,
    signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
    seed: int = 0,
    start: str = "2024-01-02 00:00",
) -> pd.DataFrame:
    """Deterministic 1-minute OHLCV bars, one contiguous block per symbol (see module docstring).

    The same seed gives identical frames; symbol ``i`` draws from ``np.random.default_rng([seed, i])``
    so the variants ``signal=True/False`` share every random draw and differ only by the drift.
    """
    if isinstance(symbols, str):
        raise DataError(f"symbols must be a sequence of names, got the string {symbols!r}")
    symbols = list(symbols)
    if n_bars < 2:
        raise DataError(f"n_bars must be at least 2, got {n_bars}")
    if not symbols or len(set(symbols)) != len(symbols):
        raise DataError(f"symbols must be non-empty and unique, got {symbols!r}")
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    if not np.isfinite(signal_strength) or signal_strength < 0:
        raise DataError(f"signal_strength must be finite and >= 0, got {signal_strength}")
    try:
        first = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise DataError(f"start {start!r} is not a timestamp pandas can parse: {exc}") from exc
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    times = pd.date_range(first, periods=n_bars, freq="min").as_unit("ns")

    drift = float(signal_strength) if signal else 0.0
    blocks = []
    for i, sym in enumerate(symbols):
        arrays = _symbol_bars(np.random.default_rng([seed, i]), n_bars, drift)
        frame = pd.DataFrame({"datetime": times, "symbol": str(sym), **arrays})
        blocks.append(frame)
    bars = pd.concat(blocks, ignore_index=True)
    bars["symbol"] = bars["symbol"].astype(str)
    return bars


# --------------------------------------------------------------------------------------------------
# Sample split directories, built by prepare
# --------------------------------------------------------------------------------------------------


def _is_complete(path: Path) -> bool:
    from mlfactory.data.container import METADATA_FILE, SPLITS, split_file

    return path.is_dir() and all((path / f).is_file() for f in (*map(split_file, SPLITS), METADATA_FILE))


def make_sample_splits(
    output_dir: str | os.PathLike[str],
    *,
    signal: bool = True,
    signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
    n_bars: int = SAMPLE_BARS,
    symbols: Sequence[str] = ("SYNA", "SYNB", "SYNC"),
    horizons: Sequence[int] = SAMPLE_HORIZONS,
    timeframes: Sequence[str] | None = SAMPLE_TIMEFRAMES,
    fractions: Sequence[float] | None = None,
    embargo: int = SAMPLE_EMBARGO,
    seed: int = 0,
) -> Path:
    """Generate synthetic bars and turn them into a split directory with ``mlfactory prepare``.

    Everything after the generator is ``prepare_splits`` with its defaults (``fractions`` unset:
    0.7/0.15/0.15 by time; purge of the longest horizon, ``embargo`` bars, robust scaler fitted on train); the
    generator's settings are added to ``scaling_metadata.json`` under ``generator``. An existing
    complete directory is left as it is. The directory is prepared under a temporary ``.partial``
    sibling (:mod:`mlfactory.atomic`) and renamed, so concurrent callers are safe and the first to finish wins.
    """
    from mlfactory.atomic import partial_path, remove_stale_partials
    from mlfactory.prepare.pipeline import METADATA_FILE, prepare_splits

    out = Path(output_dir)
    if _is_complete(out):
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists but is not a complete split directory; remove it or choose another path")
    bars = generate_bars(n_bars=n_bars, symbols=symbols, signal=signal, signal_strength=signal_strength, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = partial_path(out)  # the split loader refuses .partial paths, so a killed build is never read
    try:
        prepare_splits(bars, tmp, horizons=horizons, timeframes=timeframes, fractions=fractions, embargo=embargo)
        meta = json.loads((tmp / METADATA_FILE).read_text())
        meta["generator"] = {
            "signal": bool(signal),
            "signal_strength": float(signal_strength) if signal else 0.0,
            "seed": int(seed),
            "n_bars": int(n_bars),
            "symbols": [str(s) for s in symbols],
        }
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:
            if not _is_complete(out):
                raise
            # another process finished first; its directory is the same, keep it
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_data_dir(*, signal: bool = True) -> Path:
    """The embedded sample split directory, built on first use (a few seconds) and reused afterwards.

    It lives under ``$MLFACTORY_CACHE`` (default ``~/.cache/mlfactory``) as ``sample-v2-signal`` or
    ``sample-v2-nosignal``: 3 symbols x ``SAMPLE_BARS`` synthetic 1-minute bars through ``prepare``
    with all nine timeframes.
    """
    root = os.environ.get("MLFACTORY_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "mlfactory"
    target = base / f"{SAMPLE_VERSION}-{'signal' if signal else 'nosignal'}"
    if not _is_complete(target):
        make_sample_splits(target, signal=signal)
    return target
