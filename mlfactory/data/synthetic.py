"""Deterministic synthetic 1-minute bars with a planted, learnable relation, and the sample split builder.

Why: the project needs an embedded default data set and test data that a working model can learn
from, plus a twin in which nothing is learnable, so that a model scoring above chance on the twin
exposes a leak.

Planted relation (``signal=True``):
    Each symbol carries a persistent latent drift state ``z_t``, an AR(1) process with
    ``phi = 0.985`` (half-life about 46 bars) and unit stationary variance. The 1-bar log return is
    ``r_t = signal_strength * sigma * z_t + sigma * eps_t`` with i.i.d. Gaussian ``eps_t``, so the
    expected return follows ``z``. ``z`` is observable in past bars in two ways: through recent
    returns (momentum, since ``z`` persists) and through the shape of every bar, whose wicks are
    skewed by ``z`` (``z > 0`` lengthens the lower wick and shortens the upper one, which raises the
    close location in the bar). ``signal=False`` removes only the drift (``signal_strength`` is
    ignored): bars keep the same ``z`` footprint in their wicks, but the sign of every return is
    independent of the past, so no feature can predict the label.

Volatility ``sigma`` is constant per symbol (drawn from the symbol's generator) in both variants.
A time-varying volatility would make the share of "no barrier touched" labels predictable from the
ratio of the past volatility estimate to the true one, which is a real but unplanted relation the
leak detector must not show. Volume is log-normal, larger on bars with large moves, and carries no
direction.

Labels are triple-barrier labels whose barrier volatility is an EWM std of 1-bar log returns
(half-life 240 bars) lagged by 60 bars, so it uses only returns older than every feature window:
without the drift its estimation noise is then independent of the features, and not even the share
of 0 labels can be predicted. The split directory follows the data contract (docs/data.md):
``{train,val,test}_scaled.parquet`` and ``scaling_metadata.json``; see ``make_sample_splits``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlfactory.errors import DataError

__all__ = [
    "FEATURES",
    "average_uniqueness",
    "compute_features",
    "default_data_dir",
    "generate_bars",
    "make_sample_splits",
    "triple_barrier_labels",
]

FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_60",
    "vol_15",
    "vol_60",
    "clv",
    "clv_mean_5",
    "clv_mean_15",
    "log_volume_z_60",
    "hl_range",
    "rsi_14",
    "ma_dist_30",
)
"""Names of the features ``compute_features`` returns, in column order."""

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SAMPLE_VERSION = "sample-v1"

DEFAULT_SIGNAL_STRENGTH = 0.18
"""Drift per unit of ``z`` in units of the 1-bar volatility (tuned for 0.40-0.50 balanced accuracy)."""

_Z_PHI = 0.985  # persistence of the latent drift state
_WICK_SKEW = 0.5  # how strongly z skews the wicks (log-scale factor per unit z)
_BARRIER_VOL_HALFLIFE = 240  # bars; long so the barrier width tracks the (constant) true volatility
_BARRIER_VOL_MIN_PERIODS = 120
# The barrier volatility at t uses only returns up to t-60, older than every feature window (the
# longest, ret_60 and vol_60, use the returns of bars t-59..t). Without the planted drift the
# barrier's estimation noise is then independent of the features, so even the share of 0 labels
# cannot be predicted from them.
_BARRIER_VOL_LAG = 60


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
# Features
# --------------------------------------------------------------------------------------------------


def _ns(times: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (UTC), whatever their unit or time zone."""
    try:
        index = pd.DatetimeIndex(times)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column datetime cannot be read as timestamps: {exc}") from exc
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns").asi8


def _symbol_positions(bars: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each symbol (in order of first appearance); checks time order within symbol."""
    missing = [c for c in ("datetime", "symbol", *BAR_COLUMNS) if c not in bars.columns]
    if missing:
        raise DataError(
            f"bars are missing columns {missing}; expected datetime, symbol, open, high, low, close, volume"
        )
    codes, _ = pd.factorize(bars["symbol"], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, bounds) if len(order) else []
    times = _ns(bars["datetime"])
    for pos in groups:
        if len(pos) > 1 and not (np.diff(times[pos]) > 0).all():
            sym = bars["symbol"].iloc[pos[0]]
            raise DataError(
                f"bars of symbol {sym!r} are not strictly increasing in datetime; sort them first"
            )
    return groups


def _rolling(values: np.ndarray, window: int) -> pd.api.typing.Rolling:
    """Trailing window over ``values`` that is NaN until the window is full."""
    return pd.Series(values).rolling(window, min_periods=window)


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den, ``fill`` where den is 0 (or not finite), NaN where either side is NaN."""
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    ok = np.isfinite(den) & (den > 0)
    np.divide(num, den, out=out, where=ok)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _symbol_features(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Feature matrix (rows x len(FEATURES)) for one symbol's bars, causal by construction."""
    logc = np.log(c)
    n = len(c)

    def lag_ret(k: int) -> np.ndarray:
        out = np.full(n, np.nan)
        if n > k:
            out[k:] = logc[k:] - logc[:-k]
        return out

    r1 = lag_ret(1)
    vol15 = _rolling(r1, 15).std(ddof=1).to_numpy()
    vol60 = _rolling(r1, 60).std(ddof=1).to_numpy()
    span = h - lo
    clv = _safe_div(c - lo, span, 0.5)
    clv5 = _rolling(clv, 5).mean().to_numpy()
    clv15 = _rolling(clv, 15).mean().to_numpy()
    logv = np.log1p(np.maximum(v, 0.0))
    lv_mean = _rolling(logv, 60).mean().to_numpy()
    lv_std = _rolling(logv, 60).std(ddof=1).to_numpy()
    lv_z = _safe_div(logv - lv_mean, lv_std, 0.0)
    hl_range = span / c
    up = _rolling(np.where(np.isnan(r1), np.nan, np.maximum(r1, 0.0)), 14).sum().to_numpy()
    tot = _rolling(np.abs(r1), 14).sum().to_numpy()
    rsi = _safe_div(up, tot, 0.5)
    ma30 = _rolling(c, 30).mean().to_numpy()
    ma_dist = _safe_div(np.log(c / ma30), vol60, 0.0)
    cols = [
        r1, lag_ret(5), lag_ret(15), lag_ret(60), vol15, vol60,
        clv, clv5, clv15, lv_z, hl_range, rsi, ma_dist,
    ]  # same order as FEATURES
    return np.column_stack(cols)


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Simple causal features per symbol (columns ``FEATURES``), aligned to the rows of ``bars``.

    Each row uses only bars of its symbol at or before it; rows in a window's warm-up are NaN.
    Rows may come in any symbol order but must be strictly increasing in time within a symbol.
    """
    groups = _symbol_positions(bars)  # validates columns and time order first
    out = np.full((len(bars), len(FEATURES)), np.nan)
    ohlcv = {c: bars[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS}
    for pos in groups:
        if (ohlcv["close"][pos] <= 0).any() or (ohlcv["low"][pos] <= 0).any():
            raise DataError("bars contain non-positive prices; log returns need prices > 0")
        out[pos] = _symbol_features(*(ohlcv[c][pos] for c in BAR_COLUMNS))
    return pd.DataFrame(out, index=bars.index, columns=list(FEATURES))


# --------------------------------------------------------------------------------------------------
# Labels and weights
# --------------------------------------------------------------------------------------------------


def triple_barrier_labels(
    close: np.ndarray, volatility: np.ndarray, horizon: int, barrier_k: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triple-barrier labels for ONE symbol's close series; vectorised over rows, looping over 1..horizon.

    Barriers at ``close_t * exp(+-barrier_k * vol_t * sqrt(horizon))``; the closes at ``t+1..t+horizon``
    decide: +1 if the upper is reached first (close >= upper, and above close_t), -1 if the lower is
    reached first, 0 if neither by ``t+horizon``. Returns ``(label, fwd_return, end_index)``: label is
    NaN where ``t+horizon`` is past the end or vol_t is NaN; ``fwd_return = log(close[t+horizon]/close[t])``
    (NaN past the end); ``end_index`` is the bar that decided the label (-1 where the label is NaN).
    """
    close = np.asarray(close, dtype=np.float64)
    vol = np.asarray(volatility, dtype=np.float64)
    if close.ndim != 1 or vol.shape != close.shape:
        raise DataError(
            f"close and volatility must be 1-D arrays of equal length, got {close.shape} and {vol.shape}"
        )
    if int(horizon) != horizon or horizon < 1:
        raise DataError(f"horizon must be a positive integer, got {horizon}")
    if not np.isfinite(barrier_k) or barrier_k <= 0:
        raise DataError(f"barrier_k must be finite and > 0, got {barrier_k}")
    if (~np.isfinite(close) | (close <= 0)).any():
        raise DataError("close must be finite and > 0 everywhere")
    horizon = int(horizon)
    n = close.shape[0]
    m = max(n - horizon, 0)  # rows whose vertical barrier lies inside the data
    logc = np.log(close)
    label = np.full(n, np.nan)
    fwd = np.full(n, np.nan)
    end = np.full(n, -1, dtype=np.int64)
    if m == 0:
        return label, fwd, end

    width = barrier_k * vol[:m] * np.sqrt(horizon)
    valid = np.isfinite(width) & (width >= 0)
    lab = np.zeros(m)
    end_m = np.full(m, -1, dtype=np.int64)
    decided = ~valid
    rows = np.arange(m)
    for h in range(1, horizon + 1):
        move = logc[h : h + m] - logc[:m]
        up = ~decided & (move >= width) & (move > 0)
        down = ~decided & (move <= -width) & (move < 0)
        lab[up] = 1.0
        lab[down] = -1.0
        hit = up | down
        end_m[hit] = rows[hit] + h
        decided |= hit
    open_rows = ~decided  # valid rows not touched: vertical barrier
    end_m[open_rows] = rows[open_rows] + horizon
    lab[~valid] = np.nan
    end_m[~valid] = -1
    label[:m] = lab
    end[:m] = end_m
    fwd[:m] = logc[horizon:] - logc[:m]
    return label, fwd, end


def average_uniqueness(start: np.ndarray, end: np.ndarray, n_rows: int) -> np.ndarray:
    """Average uniqueness of each label over its life ``[start+1, end]`` (bars of one symbol).

    Concurrency of a bar is the number of labels whose life covers it; a label's weight is the mean
    of ``1/concurrency`` over its life, so heavily overlapping labels count less (they share information).
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    if start.shape != end.shape or start.ndim != 1:
        raise DataError(
            f"start and end must be 1-D arrays of equal length, got {start.shape} and {end.shape}"
        )
    if start.size == 0:
        return np.zeros(0)
    if (start < 0).any() or (end <= start).any() or (end >= n_rows).any():
        raise DataError(f"each label life needs 0 <= start < end < n_rows={n_rows}")
    events = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(events, start + 1, 1)
    np.add.at(events, end + 1, -1)
    conc = np.cumsum(events[:n_rows])
    inv = np.zeros(n_rows)
    np.divide(1.0, conc, out=inv, where=conc > 0)
    cum = np.concatenate(([0.0], np.cumsum(inv)))
    return (cum[end + 1] - cum[start + 1]) / (end - start)


# --------------------------------------------------------------------------------------------------
# Split directory
# --------------------------------------------------------------------------------------------------


def _split_files() -> tuple[str, ...]:
    return (*(f"{s}_scaled.parquet" for s in SPLITS), "scaling_metadata.json")


def _is_complete(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in _split_files())


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).isoformat()


def _labelled_frame(bars: pd.DataFrame, horizons: Sequence[int]) -> pd.DataFrame:
    """Bars + features + labels, weights (unnormalised), fwd returns and label-window end times."""
    feats = compute_features(bars)
    max_h = max(horizons)
    parts = []
    for pos in _symbol_positions(bars):
        sub = bars.iloc[pos].reset_index(drop=True)
        close = sub["close"].to_numpy(dtype=np.float64)
        r1 = np.concatenate(([np.nan], np.diff(np.log(close))))
        barrier_vol = (
            pd.Series(r1)
            .ewm(halflife=_BARRIER_VOL_HALFLIFE, min_periods=_BARRIER_VOL_MIN_PERIODS)
            .std()
            .shift(_BARRIER_VOL_LAG)
            .to_numpy()
        )
        cols: dict[str, np.ndarray] = {}
        ends: dict[int, np.ndarray] = {}
        for h in horizons:
            lab, fwd, end = triple_barrier_labels(close, barrier_vol, h)
            cols[f"label_h{h}"] = lab
            cols[f"fwd_return_h{h}"] = fwd
            ends[h] = end
        frame = pd.concat([sub[["datetime", "symbol"]], feats.iloc[pos].reset_index(drop=True)], axis=1)
        keep = frame[list(FEATURES)].notna().all(axis=1).to_numpy().copy()
        for h in horizons:
            keep &= ~np.isnan(cols[f"label_h{h}"])
        idx = np.flatnonzero(keep)
        out = frame.iloc[idx].reset_index(drop=True)
        for h in horizons:
            out[f"label_h{h}"] = cols[f"label_h{h}"][idx].astype(np.int8)
            out[f"sample_weight_h{h}"] = average_uniqueness(idx, ends[h][idx], len(sub))
            out[f"fwd_return_h{h}"] = cols[f"fwd_return_h{h}"][idx]
        for c in BAR_COLUMNS:
            out[c] = sub[c].to_numpy(dtype=np.float64)[idx]
        out["_window_end"] = _ns(sub["datetime"])[idx + max_h]
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _embargo_mask(frame: pd.DataFrame, embargo: int) -> np.ndarray:
    """True for rows after the first ``embargo`` rows of their symbol (frame sorted within symbol)."""
    rank = frame.groupby("symbol", sort=False).cumcount().to_numpy()
    return rank >= embargo


def make_sample_splits(
    output_dir: str | os.PathLike[str],
    *,
    signal: bool = True,
    n_bars: int = 8000,
    symbols: Sequence[str] = ("SYNA", "SYNB", "SYNC"),
    horizons: Sequence[int] = (5, 20),
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    embargo: int = 10,
    seed: int = 0,
) -> Path:
    """Generate synthetic bars and write a purged, embargoed, train-scaled split directory.

    Splits are chronological with cut timestamps shared by all symbols; train rows whose label window
    (t .. t+max(horizons)) reaches the validation start are purged (likewise val into test), then the
    first ``embargo`` rows of val and test per symbol are dropped. A robust scaler (median/IQR) fitted
    on train features scales the features of all splits. Sample weights are the average uniqueness of
    each label among all labelled rows of its symbol, normalised to mean 1 within each split. Written
    atomically (temporary sibling directory, then rename); an existing complete directory is left as
    it is, and a concurrent writer that finished first wins.
    """
    out = Path(output_dir)
    if _is_complete(out):
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} exists but is not a complete split directory; remove it or choose another path"
        )
    horizons = [int(h) for h in horizons]
    if not horizons or min(horizons) < 1 or len(set(horizons)) != len(horizons):
        raise DataError(f"horizons must be distinct positive integers, got {horizons}")
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-9:
        raise DataError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    if embargo < 0:
        raise DataError(f"embargo must be >= 0, got {embargo}")

    bars = generate_bars(n_bars=n_bars, symbols=symbols, signal=signal, seed=seed)
    frame = _labelled_frame(bars, horizons)

    t = _ns(frame["datetime"])
    stamps = np.unique(t)
    if len(stamps) < 10:
        raise DataError(f"n_bars={n_bars} leaves only {len(stamps)} labelled timestamps; use more bars")
    val_start = stamps[int(len(stamps) * fr[0])]
    test_start = stamps[int(len(stamps) * (fr[0] + fr[1]))]
    w_end = frame["_window_end"].to_numpy()
    parts = {
        "train": frame[(t < val_start) & (w_end < val_start)],
        "val": frame[(t >= val_start) & (t < test_start) & (w_end < test_start)],
        "test": frame[t >= test_start],
    }
    for name in ("val", "test"):
        parts[name] = parts[name][_embargo_mask(parts[name], embargo)]
    for name, part in parts.items():
        if part.empty:
            raise DataError(
                f"the {name} split is empty with n_bars={n_bars}, embargo={embargo}; use more bars"
            )

    train_x = parts["train"][list(FEATURES)].to_numpy(dtype=np.float64)
    center = np.median(train_x, axis=0)
    q75, q25 = np.percentile(train_x, [75, 25], axis=0)
    scale = q75 - q25
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        columns = ["datetime", "symbol", *FEATURES]
        for h in horizons:
            columns += [f"label_h{h}", f"sample_weight_h{h}", f"fwd_return_h{h}"]
        columns += list(BAR_COLUMNS)
        boundaries = {}
        for name, part in parts.items():
            part = part[columns].reset_index(drop=True)
            x = (part[list(FEATURES)].to_numpy(dtype=np.float64) - center) / scale
            part[list(FEATURES)] = x.astype(np.float32)
            for h in horizons:
                w = part[f"sample_weight_h{h}"].to_numpy(dtype=np.float64)
                part[f"sample_weight_h{h}"] = w / w.mean()
            part.to_parquet(tmp / f"{name}_scaled.parquet", index=False)
            boundaries[name] = [_iso(part["datetime"].min()), _iso(part["datetime"].max())]
        meta = {
            "scaler": "robust",
            "features": list(FEATURES),
            "center": {f: float(c) for f, c in zip(FEATURES, center)},
            "scale": {f: float(s) for f, s in zip(FEATURES, scale)},
            "train_range": boundaries["train"],
            "horizons": horizons,
            "split_boundaries": boundaries,
            "purge_bars": max(horizons),
            "embargo_bars": int(embargo),
            "generator": {
                "signal": bool(signal),
                "seed": int(seed),
                "n_bars": int(n_bars),
                "symbols": [str(s) for s in symbols],
            },
        }
        (tmp / "scaling_metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:
            if not _is_complete(out):
                raise
            # Another process finished first; its directory is equivalent, keep it.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_data_dir(*, signal: bool = True) -> Path:
    """The embedded sample split directory, built on first use and reused afterwards.

    It lives under ``$MLFACTORY_CACHE`` (default ``~/.cache/mlfactory``) as ``sample-v1-signal`` or
    ``sample-v1-nosignal``.

    Safe when several processes race: each builds in its own temporary directory and the first rename wins.
    """
    root = os.environ.get("MLFACTORY_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "mlfactory"
    target = base / f"{SAMPLE_VERSION}-{'signal' if signal else 'nosignal'}"
    if not _is_complete(target):
        make_sample_splits(target, signal=signal)
    return target
