"""Chronological train/val/test splits with purge and embargo, per symbol on shared cut times.

Cut times are shared by every symbol, so the splits never overlap in time (the container checks
this): by fractions of the distinct labelled timestamps, or by two dates. Per symbol:

- **purge**: a train row is dropped when its label window (bars ``t+1 .. t+P``, ``P`` the longest
  horizon) reaches the validation start; a validation row likewise against the test start;
- **embargo**: the first ``embargo`` bars of the symbol at or after each cut are dropped from val and test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlfactory.data.contract import SPLITS  # noqa: F401  (the contract's name, importable from here)
from mlfactory.prepare import PrepareError


@dataclass(frozen=True)
class Cuts:
    """The first timestamp (ns, UTC) of the validation and of the test split."""

    val_start: int
    test_start: int

    def iso(self) -> dict[str, str]:
        return {"val_start": _iso(self.val_start), "test_start": _iso(self.test_start)}


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def parse_date(value: object, what: str) -> int:
    """A date or timestamp as ns UTC (naive values are UTC)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise PrepareError(f"{what} {value!r} is not a date pandas can parse ({err}); write e.g. 2024-03-01") from None
    if stamp is pd.NaT:
        raise PrepareError(f"{what} {value!r} is not a date; write e.g. 2024-03-01")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def cut_times(
    labelled_times: np.ndarray, *, fractions: Sequence[float] | None, dates: Sequence[object] | None
) -> Cuts:
    """Cut times from fractions of the distinct labelled timestamps, or from two dates."""
    stamps = np.sort(labelled_times)  # nearly sorted already: faster than np.unique's hashing
    stamps = stamps[np.concatenate(([True], stamps[1:] != stamps[:-1]))] if len(stamps) else stamps
    if dates is not None:
        cuts = Cuts(parse_date(dates[0], "the validation start"), parse_date(dates[1], "the test start"))
        if cuts.val_start >= cuts.test_start:
            raise PrepareError(
                f"dates must be increasing: validation start {dates[0]} is not before test start {dates[1]}"
            )
        return cuts
    if len(stamps) < 3:
        raise PrepareError(f"only {len(stamps)} labelled timestamps; three splits need more bars")
    f_train, f_val = float(fractions[0]), float(fractions[1])
    val_at = int(len(stamps) * f_train)
    test_at = min(int(len(stamps) * (f_train + f_val)), len(stamps) - 1)
    return Cuts(int(stamps[val_at]), int(stamps[test_at]))


def split_rows(
    times: np.ndarray, rows: np.ndarray, *, cuts: Cuts, purge_bars: int, embargo: int
) -> dict[str, np.ndarray]:
    """Rows (indices into one symbol's base bars ``times``) of each split, purged and embargoed.

    Every row in ``rows`` must have ``purge_bars`` bars after it (it has a label at that horizon).
    """
    t = times[rows]
    window_end = times[rows + purge_bars]
    first_val = np.searchsorted(times, cuts.val_start)
    first_test = np.searchsorted(times, cuts.test_start)
    train = (t < cuts.val_start) & (window_end < cuts.val_start)
    val = (t >= cuts.val_start) & (t < cuts.test_start) & (window_end < cuts.test_start)
    val &= rows >= first_val + embargo
    test = (t >= cuts.test_start) & (rows >= first_test + embargo)
    return {"train": rows[train], "val": rows[val], "test": rows[test]}
