"""Read raw OHLCV bars from CSV or parquet, check them, and apply the documented repairs.

What is accepted (docs/data.md, "Input bars"):

- a DataFrame, a ``.csv``/``.csv.gz``/``.txt`` or ``.parquet``/``.pq`` file, or a directory of such files;
- column names matched case-insensitively (``Close``, ``CLOSE``, ``<CLOSE>``); a timestamp column
  (``datetime``, ``timestamp``, ``date_time``, ``open_time``, ``ts``, separate ``date`` + ``time``,
  ``time`` or ``date``) or a datetime index; an optional ``symbol`` (or ``ticker``) column; without
  one, a file's symbol is its name (``AAPL.csv`` -> ``AAPL``) and a DataFrame's is ``series``;
- timestamps as text (time-zone offsets honoured; naive values taken as UTC), datetimes, or epoch
  numbers (unit read from the magnitude: s, ms, us or ns); the timestamp labels the bar's start;
- a regular base resolution of one minute or coarser, the same for every symbol.

Errors (``PrepareError``): missing columns, unparsable or empty timestamps, naive and offset
timestamps mixed in one file, non-numeric or missing prices, prices <= 0, negative volume, high below
low/open/close or low above open/close, implausible prices (a jump of ``MAX_PRICE_JUMP`` or more
between two bars, or a price or volume above ``MAX_VALUE``), duplicate timestamps with different
values, a resolution finer than a minute or bars off the resolution's grid.

Repairs (each counted in ``scaling_metadata.json`` under ``input.repairs``): rows out of time order
are sorted; exact duplicate rows are dropped; gaps of at most ``fill_gaps`` missing bars are filled
with flat bars (open = high = low = close = the previous close, volume 0) that feed the indicators
and resampling but never become sample rows, but only while the market is open: each symbol's
trading calendar (weekdays and times of day) is inferred from its own bars (``Calendar``), and a
gap that reaches into a closed weekday or time of day, or, in a market that closes at all, lasts a
whole day, is kept. Longer gaps (nights, weekends, holidays, halts) are kept.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlfactory.atomic import sha256_file
from mlfactory.data.contract import RAW_BAR_COLUMNS as BAR_COLUMNS
from mlfactory.prepare import PrepareError
MINUTE_NS = 60 * 10**9
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
DEFAULT_SYMBOL = "series"

_TIME_ALIASES: tuple[str, ...] = ("datetime", "timestamp", "date_time", "open_time", "ts")
_SYMBOL_ALIASES: tuple[str, ...] = ("symbol", "ticker")
_EPOCH_UNITS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))

MAX_PRICE_JUMP = 1e6
"""A price this many times above or below the previous bar's close is a data error, not a market move.

The wildest real one-bar moves (flash crashes, unadjusted splits) are a few thousand-fold; one bad
print a million-fold off makes MACD, NATR and the other smoothed indicators non-finite in float32
for thousands of later bars."""
MAX_VALUE = 1e100
"""Largest accepted price or volume: TA-Lib squares prices and multiplies them with volumes in float64
(variances, money flow), which overflows above about 1e154."""
DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Bars:
    """Checked, repaired bars: one contiguous, time-sorted block per symbol.

    Attributes:
        times: (n,) int64 nanoseconds since the epoch, UTC: the start of each bar.
        open, high, low, close, volume: (n,) float64.
        filled: (n,) bool, True for the flat bars that filled a short gap.
        symbols: symbol names in order of first appearance.
        bounds: (n_symbols + 1,) row offsets: symbol ``i`` holds rows ``bounds[i]:bounds[i + 1]``.
        resolution_ns: the base resolution (the common spacing of the bars).
        report: what was read and repaired, recorded in ``scaling_metadata.json``.
    """

    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    filled: np.ndarray
    symbols: tuple[str, ...]
    bounds: np.ndarray
    resolution_ns: int
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)

    def block(self, i: int) -> slice:
        """Rows of symbol ``i``."""
        return slice(int(self.bounds[i]), int(self.bounds[i + 1]))

    def to_frame(self, rows: slice = slice(None)) -> pd.DataFrame:
        """The bars as a DataFrame (``datetime`` in UTC, ``symbol``, OHLCV, ``filled``).

        Args:
            rows: a range of rows (all by default); prepare writes ``bars.parquet`` a block at a time
                this way, so the frame never holds a second copy of a large input.
        """
        start, stop, _ = rows.indices(len(self.times))
        codes = np.searchsorted(self.bounds, np.arange(start, stop), side="right") - 1
        return pd.DataFrame(
            {
                "datetime": pd.to_datetime(self.times[start:stop], utc=True),
                "symbol": np.asarray(self.symbols, dtype=object)[codes],
                **{c: getattr(self, c)[start:stop] for c in BAR_COLUMNS},
                "filled": self.filled[start:stop],
            }
        )


@dataclass(frozen=True)
class Calendar:
    """When one symbol's market trades, inferred from its own bars (UTC).

    Attributes:
        weekdays: (7,) bool, Monday first: weekdays with at least one bar. A weekday that occurs
            inside the data's date range without a single bar (a weekend) is closed; one outside the
            range is unknown and counted as open.
        times_of_day: (bars per day,) bool: times of day that are open, or None when the resolution
            is a day or coarser or does not divide a day (then every time of day is open). A time of
            day is closed when no bar ever fell on it and it lies in a stretch of such times longer
            than ``fill_gaps`` bars or one hour (a night); shorter stretches are missing data.
    """

    weekdays: np.ndarray
    times_of_day: np.ndarray | None

    @property
    def always_open(self) -> bool:
        """True for a 24/7 market (crypto, the synthetic sample): gaps are filled as before."""
        return bool(self.weekdays.all()) and (self.times_of_day is None or bool(self.times_of_day.all()))

    def is_open(self, times: np.ndarray, resolution: int) -> np.ndarray:
        """Whether the market is open at each of ``times`` (int64 ns UTC)."""
        open_ = self.weekdays[_weekday(times)]
        if self.times_of_day is not None:
            open_ &= self.times_of_day[(times % DAY_NS) // resolution]
        return open_

    def describe(self, resolution: int) -> dict:
        """The calendar as recorded in ``scaling_metadata.json``: open weekdays and UTC sessions."""
        if self.times_of_day is None or self.times_of_day.all():
            hours = ["00:00-24:00"]
        else:
            n = len(self.times_of_day)
            hours = [f"{_clock(a * resolution)}-{_clock((b - n if b > n else b) * resolution)}"
                     for a, b in _runs(self.times_of_day)]
        return {
            "always_open": self.always_open,
            "weekdays": [d for d, is_open in zip(WEEKDAYS, self.weekdays) if is_open],
            "hours_utc": hours,
        }


def infer_calendar(times: np.ndarray, resolution: int, fill_gaps: int) -> Calendar:
    """The trading calendar of one symbol from its (real, sorted) bar times; see ``Calendar``."""
    weekdays = np.zeros(7, dtype=bool)
    weekdays[_weekday(times)] = True
    first_day, last_day = int(times[0] // DAY_NS), int(times[-1] // DAY_NS)
    in_range = np.zeros(7, dtype=bool)
    in_range[(np.arange(first_day, min(last_day, first_day + 6) + 1) + 3) % 7] = True
    weekdays |= ~in_range  # never seen, never tested: unknown, so open
    times_of_day = None
    if resolution < DAY_NS and DAY_NS % resolution == 0:
        seen = np.zeros(DAY_NS // resolution, dtype=bool)
        seen[(times % DAY_NS) // resolution] = True
        times_of_day = np.ones(len(seen), dtype=bool)
        longest_hole = min(fill_gaps, max(1, HOUR_NS // resolution))
        for start, stop in _runs(~seen):
            if stop - start > longest_hole:
                times_of_day[np.arange(start, stop) % len(seen)] = False
    return Calendar(weekdays, times_of_day)


def _weekday(times: np.ndarray) -> np.ndarray:
    """Monday = 0 for int64 ns UTC times (1970-01-01 was a Thursday)."""
    return (times // DAY_NS + 3) % 7


def _clock(ns: int) -> str:
    minutes = int(ns // MINUTE_NS)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a circular mask as ``(start, stop)``; a run may wrap (``stop`` past the end)."""
    n = len(mask)
    if mask.all():
        return [(0, n)]
    if not mask.any():
        return []
    shift = int(np.argmin(mask))  # start the scan on a False so no run wraps inside the scan
    rolled = np.roll(mask, -shift).astype(np.int8)
    edges = np.diff(np.concatenate(([0], rolled, [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a + shift) % n, int(a + shift) % n + int(b - a)) for a, b in zip(starts, stops)]


def load_bars(source: pd.DataFrame | str | os.PathLike[str], *, fill_gaps: int = 5,
              resolution_ns: int | None = None) -> Bars:
    """Read, check and repair OHLCV bars from a DataFrame, a file or a directory of files.

    Args:
        source: the bars, or a path to a CSV/parquet file or a directory holding such files.
        fill_gaps: fill gaps of at most this many missing bars with flat, zero-volume bars (0: none).
        resolution_ns: the known base resolution (a bundle's recipe): the bars must lie on its grid, and a
            symbol may then have a single bar. None: inferred from the bars (the most common spacing).

    Raises:
        PrepareError: naming the file, the row and what to do, for every way the bars can be wrong.
    """
    fill_gaps = whole_number(fill_gaps, "fill_gaps", 0)
    parts, origins, info = _read_source(source)
    raw = _merge_symbols(parts)
    if raw.empty:
        raise PrepareError(f"{info['source']} holds no bars; it needs rows of datetime, open, high, low, close, volume")
    _check_values(raw, origins)
    info["rows_read"] = len(raw)
    return _repair(raw, origins, fill_gaps, info, resolution_ns)


def whole_number(value: object, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (a count of bars), or a PrepareError naming the option."""
    try:
        number = int(value)  # type: ignore[arg-type]
        whole = number == float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        whole = False
    if not whole or number < minimum:
        raise PrepareError(f"{name} must be a whole number of bars >= {minimum}, got {value!r}")
    return number


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


_Part = tuple[pd.DataFrame, list[str]]  # a canonical frame and the names its ``_symbol`` codes index


def _read_source(source: pd.DataFrame | str | os.PathLike[str]) -> tuple[list[_Part], list[tuple[str, str]], dict]:
    """Canonical frames (``_time`` ns, ``_symbol`` code, OHLCV, ``_source``, ``_row``), their origins, input info."""
    if isinstance(source, pd.DataFrame):
        part = _canonical(source, DEFAULT_SYMBOL, ("DataFrame", "frame"), 0)
        return [part], [("DataFrame", "frame")], {"source": "DataFrame", "sha256": _frame_digest(*part)}
    path = Path(source)
    if not path.exists():
        raise PrepareError(f"input {path} does not exist; pass a CSV or parquet file, or a directory of them")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p) is not None)
        if not files:
            raise PrepareError(
                f"input directory {path} holds no {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)} files"
            )
    elif _kind(path) is None:
        raise PrepareError(
            f"input {path} is neither CSV ({', '.join(CSV_SUFFIXES)}) nor parquet ({', '.join(PARQUET_SUFFIXES)}); "
            "rename it or convert it"
        )
    else:
        files = [path]
    parts, origins, hashes = [], [], []
    for i, file in enumerate(files):
        kind = _kind(file)
        origin = (file.name, kind)
        parts.append(_canonical(_read_file(file, kind), _stem(file), origin, i))
        origins.append(origin)
        hashes.append({"name": file.name, "sha256": sha256_file(file)})
    if len(files) == 1:
        digest = hashes[0]["sha256"]
    else:
        digest = hashlib.sha256("".join(f"{h['name']}\0{h['sha256']}\n" for h in hashes).encode()).hexdigest()
    return parts, origins, {"source": str(path), "files": hashes, "sha256": digest}


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_file(path: Path, kind: str) -> pd.DataFrame:
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=_sniff_separator(path))
    except PrepareError:
        raise
    except Exception as err:  # pandas and pyarrow raise many unrelated types for damaged files
        raise PrepareError(
            f"cannot read {path} as {kind} ({type(err).__name__}: {err}); check or rewrite the file"
        ) from None


def _sniff_separator(path: Path) -> str:
    """The delimiter of a CSV file, from its header line: the most frequent of , ; tab |."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", errors="replace") as handle:
        header = handle.readline()
    if not header.strip():
        raise PrepareError(f"{path} is empty; it needs a header line and rows of bars")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    return max(counts, key=counts.get)


def _normal(name: object) -> str:
    return str(name).strip().strip("<>").strip().lower()


def _merge_symbols(parts: list[_Part]) -> pd.DataFrame:
    """One frame whose ``_symbol`` codes index ``frame.attrs['symbols']`` (in order of first appearance)."""
    names: dict[str, int] = {}
    frames = []
    for frame, local in parts:
        mapping = np.array([names.setdefault(n, len(names)) for n in local], dtype=np.int32)
        if len(local):
            frame["_symbol"] = mapping[frame["_symbol"].to_numpy()]
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    raw.attrs["symbols"] = list(names)
    return raw


def _canonical(frame: pd.DataFrame, default_symbol: str, origin: tuple[str, str], source: int) -> _Part:
    """Match columns case-insensitively and parse them into one canonical frame."""
    where = origin[0]
    if isinstance(frame.index, pd.DatetimeIndex) or _normal(frame.index.name) in _TIME_ALIASES:
        frame = frame.rename_axis(frame.index.name or "datetime").reset_index()
    names: dict[str, object] = {}
    for column in frame.columns:
        key = _normal(column)
        if key in names:
            raise PrepareError(
                f"{where}: columns {names[key]!r} and {column!r} have the same name ignoring case; keep one"
            )
        names[key] = column
    missing = [c for c in BAR_COLUMNS if c not in names]
    time_key = next((a for a in _TIME_ALIASES if a in names), None)
    if time_key is None and not ("date" in names and "time" in names):
        time_key = next((a for a in ("time", "date") if a in names), None)
        if time_key is None:
            missing.insert(0, "datetime")
    if missing:
        raise PrepareError(
            f"{where} is missing columns {missing} (found {[str(c) for c in frame.columns]}); bars need a timestamp "
            "(datetime, timestamp, date + time, or a datetime index) and open, high, low, close, volume, "
            "matched ignoring case"
        )
    if time_key is None:
        stamps = frame[names["date"]].astype(str) + " " + frame[names["time"]].astype(str)
    else:
        stamps = frame[names[time_key]]
    out = {"_time": _parse_times(stamps, origin)}
    symbol_key = next((a for a in _SYMBOL_ALIASES if a in names), None)
    if symbol_key is None:
        out["_symbol"], symbol_names = np.zeros(len(frame), dtype=np.int32), [default_symbol]
    else:
        symbols = frame[names[symbol_key]]
        if symbols.isna().any():
            row = int(np.flatnonzero(symbols.isna().to_numpy())[0])
            raise PrepareError(f"{_where(origin, row)}: the symbol is empty; fill it or drop the row")
        codes, uniques = pd.factorize(symbols, sort=False)  # codes, not a million Python strings
        out["_symbol"], symbol_names = codes.astype(np.int32), [str(u) for u in uniques]
    for column in BAR_COLUMNS:
        out[column] = _numeric(frame[names[column]], column, origin)
    out["_source"] = np.full(len(frame), source, dtype=np.int32)
    out["_row"] = np.arange(len(frame), dtype=np.int64)
    return pd.DataFrame(out, copy=False), symbol_names  # the arrays are new: no second copy


def _where(origin: tuple[str, str], row: int) -> str:
    name, kind = origin
    if kind == "csv":
        return f"{name} line {row + 2}"  # the header is line 1
    return f"{name} row {row}"


def _parse_times(values: pd.Series, origin: tuple[str, str]) -> np.ndarray:
    """Timestamps as int64 ns UTC; naive values are taken as UTC, numbers as epoch time."""
    values = pd.Series(values).reset_index(drop=True)
    empty = values.isna().to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise PrepareError(f"{_where(origin, row)}: the timestamp is empty ({int(empty.sum())} such rows); drop them")
    if pd.api.types.is_bool_dtype(values):
        raise PrepareError(f"{origin[0]}: the timestamp column holds booleans; it needs dates and times")
    if pd.api.types.is_numeric_dtype(values):
        magnitude = float(np.abs(values.to_numpy(dtype=np.float64)).max())
        unit = next((u for limit, u in _EPOCH_UNITS if magnitude < limit), "ns")
        parsed = pd.to_datetime(values, unit=unit, utc=True, errors="coerce")
    elif isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        try:
            parsed = pd.to_datetime(values, utc=True, errors="coerce")
        except (ValueError, TypeError, OverflowError) as err:
            raise PrepareError(
                f"{origin[0]}: timestamps cannot be parsed ({err}); write them as ISO 8601, e.g. 2024-01-02 09:30:00"
            ) from None
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        _check_mixed_awareness(values, bad, row, origin)
        raise PrepareError(
            f"{_where(origin, row)}: cannot parse the timestamp {_show(values.iloc[row])} "
            f"({int(bad.sum())} unparsable); "
            "write timestamps in one format, e.g. ISO 8601 2024-01-02 09:30:00, or as epoch seconds"
        )
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").view(np.int64)


def _awareness(value: object) -> bool | None:
    """Whether one timestamp value parses with a time-zone offset (True), without one (False), or not at all."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return None if pd.isna(stamp) else stamp.tzinfo is not None


def _check_mixed_awareness(values: pd.Series, bad: np.ndarray, row: int, origin: tuple[str, str]) -> None:
    """pandas reads a column in the awareness of its first value and drops the others to NaT: say so."""
    failed = _awareness(values.iloc[row])
    good = np.flatnonzero(~bad)
    reference = int(good[0]) if good.size else None
    if failed is None or reference is None or _awareness(values.iloc[reference]) == failed:
        return
    aware, naive = (row, reference) if failed else (reference, row)
    raise PrepareError(
        f"{origin[0]}: timestamps mix time zone awareness: {_where(origin, aware)} has an offset "
        f"({_show(values.iloc[aware])}) but {_where(origin, naive)} has none ({_show(values.iloc[naive])}); "
        f"{int(bad.sum())} rows differ from the first. Write every timestamp with its offset (e.g. +00:00), "
        "or none (naive timestamps are taken as UTC)"
    )


def _numeric(values: pd.Series, column: str, origin: tuple[str, str]) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PrepareError(
            f"{_where(origin, row)}: column {column!r} holds {_show(values.iloc[row])}, not a finite number "
            f"({int(bad.sum())} such rows); fill or drop them"
        )
    return numbers


def _show(value: object) -> str:
    """A cell value for a message: strings quoted, numbers plain (not ``np.float64(...)``)."""
    return repr(value) if isinstance(value, str) else str(value)


def _frame_digest(frame: pd.DataFrame, symbols: list[str]) -> str:
    """sha256 of the parsed bars (timestamps, symbols, OHLCV) of a DataFrame input."""
    digest = hashlib.sha256()
    digest.update(frame["_time"].to_numpy().tobytes())
    digest.update(frame["_symbol"].to_numpy(dtype=np.int64).tobytes())
    digest.update("\0".join(symbols).encode())
    for column in BAR_COLUMNS:
        digest.update(frame[column].to_numpy(dtype=np.float64).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Checks and repairs
# --------------------------------------------------------------------------------------------------


def _check_values(raw: pd.DataFrame, origins: list[tuple[str, str]]) -> None:
    o, h, l, c, v = (raw[col].to_numpy() for col in BAR_COLUMNS)
    checks = (
        ((o <= 0) | (h <= 0) | (l <= 0) | (c <= 0), "has a price <= 0; prices must be positive (log returns)"),
        (v < 0, "has a negative volume"),
        (h < l, "has high below low"),
        ((h < o) | (h < c), "has high below open or close"),
        ((l > o) | (l > c), "has low above open or close"),
    )
    for bad, what in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            values = ", ".join(f"{col}={raw[col].iloc[row]:g}" for col in BAR_COLUMNS)
            raise PrepareError(
                f"{_describe(raw, origins, row)} {what} ({values}); {int(bad.sum())} bar(s) affected. "
                "Fix or drop those bars in the source data."
            )


def _describe(raw: pd.DataFrame, origins: list[tuple[str, str]], row: int) -> str:
    origin = origins[int(raw["_source"].iloc[row])]
    stamp = pd.Timestamp(int(raw["_time"].iloc[row]), tz="UTC")
    symbol = raw.attrs["symbols"][int(raw["_symbol"].iloc[row])]
    return f"{_where(origin, int(raw['_row'].iloc[row]))} ({symbol} {stamp})"


def _repair(raw: pd.DataFrame, origins: list[tuple[str, str]], fill_gaps: int, info: dict,
            known_resolution: int | None = None) -> Bars:
    names = raw.attrs["symbols"]
    codes, times = raw["_symbol"].to_numpy(), raw["_time"].to_numpy()
    grouped = np.argsort(codes, kind="stable")  # each symbol's rows in file order, even if interleaved
    same = codes[grouped][1:] == codes[grouped][:-1]
    out_of_order = int(np.count_nonzero(same & (times[grouped][1:] < times[grouped][:-1])))
    order = np.lexsort((times, codes))  # stable: by symbol (first appearance), then time
    attrs = raw.attrs
    if (order[1:] < order[:-1]).any():  # sorted input (the usual case) is not copied: peak memory
        raw = raw.iloc[order].reset_index(drop=True)
        raw.attrs = attrs
        codes, times = codes[order], times[order]
    del order

    dup = np.zeros(len(raw), dtype=bool)
    dup[1:] = (codes[1:] == codes[:-1]) & (times[1:] == times[:-1])
    if dup.any():
        values = raw[list(BAR_COLUMNS)].to_numpy()
        rows = np.flatnonzero(dup)
        differs = (values[rows] != values[rows - 1]).any(axis=1)
        if differs.any():
            row = int(rows[np.flatnonzero(differs)[0]])
            raise PrepareError(
                f"{_describe(raw, origins, row)} and {_describe(raw, origins, row - 1)} have the same timestamp but "
                f"different values ({int(differs.sum())} such pairs); keep one bar per timestamp and symbol"
            )
        raw, codes, times = raw[~dup].reset_index(drop=True), codes[~dup], times[~dup]
        raw.attrs = attrs
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(codes)) + 1, [len(codes)])).astype(np.int64)
    _check_plausible(raw, origins, bounds)
    resolution = _resolution(raw, origins, bounds, [str(s) for s in names], known_resolution)
    arrays = {c: raw[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS}
    calendars = [infer_calendar(times[bounds[i] : bounds[i + 1]], resolution, fill_gaps) for i in range(len(names))]
    filled, bounds, gaps = _fill_gaps(times, arrays, bounds, resolution, fill_gaps, calendars)
    info.update(
        {
            "symbols": [str(s) for s in names],
            "resolution": _label(resolution),
            "repairs": {
                "rows_sorted": out_of_order,
                "duplicates_dropped": int(dup.sum()),
                "gaps_filled": gaps["filled_gaps"],
                "bars_filled": gaps["filled_bars"],
            },
            "gaps_kept": {"count": gaps["kept"], "largest": gaps["largest"],
                          "short_but_market_closed": gaps["closed"]},
            "calendar": {str(s): c.describe(resolution) for s, c in zip(names, calendars)},
        }
    )
    return Bars(
        times=filled["times"],
        **{c: filled[c] for c in BAR_COLUMNS},
        filled=filled["filled"],
        symbols=tuple(str(s) for s in names),
        bounds=bounds,
        resolution_ns=resolution,
        report=info,
    )


def _resolution(raw: pd.DataFrame, origins: list[tuple[str, str]], bounds: np.ndarray, symbols: list[str],
                known: int | None = None) -> int:
    """The base resolution: the most common spacing, the same for every symbol, on a whole-minute grid
    (or ``known``, on whose grid every bar must lie)."""
    times = raw["_time"].to_numpy()
    found = {}
    for i, symbol in enumerate(symbols if known is None else ()):
        steps = np.diff(times[bounds[i] : bounds[i + 1]])
        if len(steps) == 0:
            raise PrepareError(f"symbol {symbol!r} has a single bar; each symbol needs a series of bars")
        values, counts = np.unique(steps, return_counts=True)
        found[symbol] = int(values[np.argmax(counts)])
    if known is not None:
        _check_known_resolution(raw, origins, bounds, symbols, int(known))
    resolutions = set(found.values()) if known is None else {int(known)}
    if len(resolutions) > 1:
        detail = ", ".join(f"{s}: {_label(r)}" for s, r in found.items())
        raise PrepareError(f"symbols have different bar resolutions ({detail}); prepare each resolution separately")
    resolution = resolutions.pop()
    if resolution < MINUTE_NS or resolution % MINUTE_NS:
        raise PrepareError(
            f"the bars are {pd.Timedelta(resolution)} apart; prepare needs a resolution of whole minutes, 1 minute or "
            "coarser. Resample the bars first (e.g. to 1-minute bars)."
        )
    off_grid = np.zeros(len(times), dtype=bool)
    off_grid[1:] = (np.diff(times) % resolution) != 0
    off_grid[bounds[:-1]] = False
    if off_grid.any():
        row = int(np.flatnonzero(off_grid)[0])
        step = pd.Timedelta(int(times[row] - times[row - 1]))
        raise PrepareError(
            f"{_describe(raw, origins, row)} comes {step} after the bar before it, but the bars are "
            f"{_label(resolution)} apart ({int(off_grid.sum())} bars off the grid); drop or realign those bars"
        )
    return resolution


KNOWN_RESOLUTION_MIN_STEPS = 10
"""Bars of a symbol from which their most common spacing must be the known resolution (fewer may all be gaps)."""


def _check_known_resolution(raw: pd.DataFrame, origins: list[tuple[str, str]], bounds: np.ndarray,
                            symbols: list[str], known: int) -> None:
    """Bars read for a known resolution: on its absolute grid, and (with enough bars) mostly that far apart."""
    times = raw["_time"].to_numpy()
    off = np.flatnonzero(times % known)
    if off.size:
        raise PrepareError(
            f"{_describe(raw, origins, int(off[0]))} is not on the {_label(known)} grid the model was trained on "
            f"(bars start at whole multiples of {_label(known)}); {off.size} bar(s) affected. Realign the bars"
        )
    for i, symbol in enumerate(symbols):
        steps = np.diff(times[bounds[i] : bounds[i + 1]])
        if len(steps) >= KNOWN_RESOLUTION_MIN_STEPS:
            values, counts = np.unique(steps, return_counts=True)
            common = int(values[np.argmax(counts)])
            if common != known:
                raise PrepareError(
                    f"the bars of symbol {symbol!r} are {_label(common)} apart, but the model was trained on "
                    f"{_label(known)} bars; give {_label(known)} bars (resample them first)"
                )


def _fill_gaps(
    times: np.ndarray, arrays: dict[str, np.ndarray], bounds: np.ndarray, resolution: int, fill_gaps: int,
    calendars: list[Calendar],
) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Insert flat, zero-volume bars into gaps of at most ``fill_gaps`` missing bars while the market is open."""
    missing = np.diff(times) // resolution - 1
    inside = np.ones(len(missing), dtype=bool)
    inside[bounds[1:-1] - 1] = False  # a step across two symbols is not a gap
    missing = np.where(inside, missing, 0)
    fill = (missing >= 1) & (missing <= fill_gaps)
    closed = _closed_gaps(times, missing, fill, bounds, resolution, calendars)
    fill &= ~closed
    kept = (missing >= 1) & ~fill
    largest = int(missing[kept].max()) * resolution + resolution if kept.any() else 0
    stats = {
        "filled_gaps": int(fill.sum()),
        "filled_bars": int(missing[fill].sum()),
        "kept": int(kept.sum()),
        "closed": int(closed.sum()),
        "largest": str(pd.Timedelta(largest)) if largest else None,
    }
    out = {c: arrays[c] for c in BAR_COLUMNS}
    out["times"] = times
    out["filled"] = np.zeros(len(times), dtype=bool)
    if not fill.any():
        return out, bounds, stats
    gap_at = np.flatnonzero(fill)
    counts = missing[gap_at]
    after = np.repeat(gap_at, counts)  # the real bar each filled bar follows
    step = np.arange(len(after)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    flat = arrays["close"][after]
    inserts = {
        "times": times[after] + step * resolution,
        "open": flat,
        "high": flat,
        "low": flat,
        "close": flat,
        "volume": np.zeros(len(after)),
        "filled": np.ones(len(after), dtype=bool),
    }
    out = {k: np.insert(out[k], after + 1, inserts[k]) for k in out}
    added_before = np.searchsorted(after + 1, bounds, side="right")
    added_before[0] = 0
    return out, bounds + added_before, stats


def _closed_gaps(times: np.ndarray, missing: np.ndarray, candidates: np.ndarray, bounds: np.ndarray,
                 resolution: int, calendars: list[Calendar]) -> np.ndarray:
    """Which candidate gaps fall (partly) on a closed market: a closed weekday or time of day, or, in a
    market that closes at all, a whole day or more (a holiday)."""
    closed = np.zeros(len(missing), dtype=bool)
    for i, calendar in enumerate(calendars):
        if calendar.always_open:
            continue
        at = np.flatnonzero(candidates[bounds[i] : max(bounds[i + 1] - 1, bounds[i])]) + bounds[i]
        if at.size == 0:
            continue
        counts = missing[at]
        owner = np.repeat(np.arange(len(at)), counts)
        step = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        slot_open = calendar.is_open(times[at][owner] + step * resolution, resolution)
        shut = np.bincount(owner, weights=~slot_open, minlength=len(at)) > 0
        closed[at] = shut | (counts * resolution >= DAY_NS)
    return closed


def _check_plausible(raw: pd.DataFrame, origins: list[tuple[str, str]], bounds: np.ndarray) -> None:
    """Refuse prices and volumes that cannot be market data (``MAX_PRICE_JUMP``, ``MAX_VALUE``), naming the bar.

    ``raw`` is sorted by symbol and time; ``bounds`` delimits the symbols.
    """
    # one price column at a time (not a (4, n) stack of logs): checking a large input costs little memory
    columns = [raw[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS[:4]]
    previous = np.full(len(raw), np.nan)
    previous[1:] = np.log10(columns[3][:-1])
    previous[bounds[:-1]] = np.nan  # the first bar of a symbol has no previous close
    jump = np.zeros(len(raw))
    with np.errstate(invalid="ignore"):
        for values in columns:
            np.fmax(jump, np.abs(np.log10(values) - previous), out=jump)  # fmax skips the NaN of first bars
    del previous
    jumps = np.flatnonzero(jump >= np.log10(MAX_PRICE_JUMP))
    if jumps.size:
        row = int(jumps[0])
        start = int(bounds[np.searchsorted(bounds, row, side="right") - 1])
        close = columns[3]
        median = float(np.median(np.log10(close[start : int(bounds[np.searchsorted(bounds, row, side="right")])])))
        # the bad bar is the one of the pair whose price lies farther from the symbol's median close
        here = np.abs(np.log10([values[row] for values in columns]) - median)
        if abs(np.log10(close[row - 1]) - median) > here.max():
            row, column = row - 1, "close"
        else:
            column = BAR_COLUMNS[int(np.argmax(here))]
        value = float(columns[BAR_COLUMNS.index(column)][row])
        neighbours = []
        if row > start:
            neighbours.append(f"previous close {close[row - 1]:g}")
        if row + 1 < len(raw) and row + 1 not in bounds:
            neighbours.append(f"next close {close[row + 1]:g}")
        orders = abs(np.log10(value) - median)
        raise PrepareError(
            f"{_describe(raw, origins, row)} has an implausible {column} {value:g}: {orders:.0f} orders of magnitude "
            f"away from its neighbours ({', '.join(neighbours)}; the symbol's median close is {10 ** median:g}), "
            f"a jump of {MAX_PRICE_JUMP:g}x or more in one bar, which no market makes; {len(jumps)} such jump(s). "
            "Fix or drop the bad bar in the source data."
        )
    for column in BAR_COLUMNS:
        values = raw[column].to_numpy(dtype=np.float64)
        huge = np.flatnonzero(values > MAX_VALUE)
        if huge.size:
            row = int(huge[0])
            raise PrepareError(
                f"{_describe(raw, origins, row)} has {column} {values[row]:g}, above {MAX_VALUE:g}: numbers that large "
                f"overflow the indicator arithmetic (squares and products in float64); {huge.size} bar(s) affected. "
                "Rescale the series (e.g. quote in thousands) or fix the bad bars."
            )


def _label(ns: int) -> str:
    from mlfactory.prepare.timeframes import label

    return label(ns)
