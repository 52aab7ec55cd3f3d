"""Higher-timeframe bars with one fixed anchor, and their alignment to the base rows on closed bars only.

Anchor: every timeframe's bins start at 00:00 UTC of each day and repeat every ``tf`` within the
day. For the timeframes that divide a day this is the same as anchoring at the epoch. 25 minutes
does not divide a day: its bins restart at each midnight (00:00, 00:25, ..., 23:20), so they never
drift from one day to the next, and the 15-minute stub 23:45-24:00 is never a complete bin.

Complete bins: a bin is kept only if it spans the full ``tf`` and holds every one of its
``tf / base`` base bars. Bins cut by a gap, by the end of the data or by midnight are dropped.

Closed-bar alignment: a complete bin becomes visible at the base row of its last bar, the row whose
bar closes when the bin closes. Every base row carries the indicators of the latest complete bin
visible at it. A row inside an unfinished bin sees the bin before it, never the one being built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlfactory.prepare import PrepareError

MINUTE_NS = 60 * 10**9
DAY_NS = 24 * 60 * MINUTE_NS
TIMEFRAMES: tuple[str, ...] = ("1min", "5min", "10min", "15min", "20min", "25min", "30min", "1h", "4h")
"""The nine timeframes ``prepare`` builds by default (those at or above the base resolution)."""

_PATTERN = re.compile(r"^\s*(\d+)\s*(min|m|t|h|d)\s*$", re.IGNORECASE)
_UNIT_NS = {"min": MINUTE_NS, "m": MINUTE_NS, "t": MINUTE_NS, "h": 60 * MINUTE_NS, "d": DAY_NS}


def parse(name: str) -> int:
    """A timeframe name (``5min``, ``1h``, ``4H``, ``60m``, ``1d``) in nanoseconds."""
    match = _PATTERN.match(str(name))
    if not match or int(match.group(1)) == 0:
        raise PrepareError(f"unknown timeframe {name!r}; write minutes, hours or days, e.g. {', '.join(TIMEFRAMES)}")
    return int(match.group(1)) * _UNIT_NS[match.group(2).lower()]


def label(ns: int) -> str:
    """The canonical name of a timeframe: ``1min``, ``25min``, ``1h``, ``4h``, ``1d``."""
    if ns % DAY_NS == 0:
        return f"{ns // DAY_NS}d"
    if ns % (60 * MINUTE_NS) == 0:
        return f"{ns // (60 * MINUTE_NS)}h"
    if ns % MINUTE_NS == 0:
        return f"{ns // MINUTE_NS}min"
    return f"{ns / 1e9:g}s"


def resolve(base_ns: int, requested: Sequence[str] | None = None) -> list[int]:
    """The timeframes to build, in nanoseconds, base resolution first, then ascending.

    ``None`` picks the nine default timeframes that are coarser than the base and whole multiples of it.
    The base timeframe is always built; a requested timeframe finer than the base or not a multiple of
    it is an error.
    """
    if requested is None:
        chosen = {parse(n) for n in TIMEFRAMES}
        chosen = {tf for tf in chosen if tf > base_ns and tf % base_ns == 0}
    else:
        if isinstance(requested, str):
            requested = [requested]
        chosen = set()
        for name in requested:
            tf = parse(name)
            if tf < base_ns or tf % base_ns:
                raise PrepareError(
                    f"timeframe {name!r} cannot be built from {label(base_ns)} bars: it must be a whole multiple of "
                    f"the base resolution; drop it from --timeframes"
                )
            if tf >= DAY_NS and tf != base_ns:
                raise PrepareError(f"timeframe {name!r} is a day or longer; prepare builds intraday timeframes only")
            chosen.add(tf)
        chosen.discard(base_ns)
    return [base_ns, *sorted(chosen)]


@dataclass(frozen=True)
class Bins:
    """The complete bins of one timeframe for one symbol.

    Attributes:
        open, high, low, close, volume: (n_bins,) float64 aggregated bars.
        start: (n_bins,) int64 ns, the start of each bin.
        last_row: (n_bins,) int64, the base row of each bin's last bar: where the bin becomes visible.
        n_incomplete: bins dropped because a bar was missing or the bin was cut short.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    start: np.ndarray
    last_row: np.ndarray
    n_incomplete: int


def bin_starts(times: np.ndarray, tf_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (ns) of the bin holding each timestamp; bins restart at each midnight UTC."""
    day = (times // DAY_NS) * DAY_NS
    start = day + ((times - day) // tf_ns) * tf_ns
    return start, np.minimum(start + tf_ns, day + DAY_NS)


def resample(
    times: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    base_ns: int,
    tf_ns: int,
) -> Bins:
    """Aggregate one symbol's time-sorted base bars into the complete bins of timeframe ``tf_ns``."""
    n = len(times)
    if n == 0:
        empty = np.zeros(0)
        return Bins(empty, empty, empty, empty, empty, np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    start, end = bin_starts(times, tf_ns)
    first = np.flatnonzero(np.concatenate(([True], start[1:] != start[:-1])))
    last = np.concatenate((first[1:] - 1, [n - 1]))
    complete = ((end[first] - start[first]) == tf_ns) & ((last - first + 1) == tf_ns // base_ns)
    keep = np.flatnonzero(complete)
    return Bins(
        open=open_[first[keep]],
        high=np.maximum.reduceat(high, first)[keep],
        low=np.minimum.reduceat(low, first)[keep],
        close=close[last[keep]],
        volume=np.add.reduceat(volume, first)[keep],
        start=start[first[keep]],
        last_row=last[keep].astype(np.int64),
        n_incomplete=int(len(first) - len(keep)),
    )


def visible_bin(last_row: np.ndarray, n_rows: int) -> np.ndarray:
    """For each base row, the index of the latest complete bin whose last bar is at or before it (-1: none)."""
    marks = np.full(n_rows, -1, dtype=np.int64)
    marks[last_row] = np.arange(len(last_row), dtype=np.int64)
    return np.maximum.accumulate(marks) if n_rows else marks


def align(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``values`` of the visible bin on every base row; NaN before the first complete bin."""
    out = values[np.maximum(position, 0)] if len(values) else np.full(len(position), np.nan)
    if len(values):
        out[position < 0] = np.nan
    return out
