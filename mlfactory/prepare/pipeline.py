"""``prepare_splits``: raw OHLCV bars in, a leakage-safe split directory out.

Stages (docs/data.md, "Preparing splits from raw bars"): read, check and repair the bars; per
symbol, compute the multi-timeframe features and the triple-barrier labels and weights; cut the
chronological splits with purge and embargo; fit the scaler on train; write
``{train,val,test}_scaled.parquet``, ``bars.parquet`` (the checked base bars, for the multi-resolution
view) and ``scaling_metadata.json`` into a temporary directory and rename it into place, so a failed
run never leaves a directory that looks valid.

Memory is bounded by one symbol's working set, not by the whole input: each symbol's features and
labels are computed, then the sample rows' features (float32) and labels are kept (``_Spill``): in
memory while all symbols' kept values stay under ``SPILL_IN_MEMORY_BYTES``, beyond that in ``.npy``
files in the temporary directory (``_SPILL_DIR``), read back memory-mapped a block at a time. Only
small per-row arrays (sample rows, unnormalised weights) stay in memory for every symbol. The scaler is
then fitted one feature at a time from the spills, and the split files are written symbol by symbol,
each symbol's spill files removed once its rows are written, the spill directory before the rename.
The spill needs free disk beside the output: 4 bytes x features x sample rows, plus a few bytes per
horizon per row for the labels and forward returns, more than the compressed splits (docs/data.md, "Speed and memory"). The checked input bars
stay in memory (about 49 bytes a bar); ``bars.parquet`` is written from them a block at a time.

The temporary directory is ``<output name>.<pid>-<random>.partial`` beside the output
(:mod:`mlfactory.atomic`), created (with the ``UNFINISHED_MARKER`` file; the split loader refuses both)
before any computation, so an unwritable destination fails at once. A run killed by SIGKILL leaves it
behind; the next run for the same output removes it once its process is gone.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlfactory.atomic import partial_path, remove_stale_partials, replace_dir
from mlfactory.data.contract import (
    BARS_FILE,
    METADATA_FILE,
    RAW_BAR_COLUMNS,
    SPLITS,
    UNFINISHED_MARKER,
    split_file,
    split_schema,
)
from mlfactory.prepare import OutputExistsError, PrepareError
from mlfactory.prepare.scaling import Scaler, check_kind
from mlfactory.prepare import timeframes as tfs
from mlfactory.prepare.bars import Bars, load_bars, whole_number
from mlfactory.prepare.features import feature_names, symbol_features, timeframe_slices
from mlfactory.prepare.labels import Labels, label_symbol
from mlfactory.prepare.splits import Cuts, cut_times, split_rows
from mlfactory.prepare.weights import normalise, sample_weights

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEFAULT_MAX_DROP_SHARE = 0.01
"""Largest share of a symbol's rows (after the warm-up) that a step may drop for non-finite features or
missing labels before prepare refuses; normal data drops none."""
_CHUNK_ROWS = 65_536  # rows per parquet row group: bounds the memory of writing
_BARS_GROUP_ROWS = 1024 * 1024  # rows per row group of bars.parquet (pyarrow's default for a whole table)
_SPILL_DIR = "spill"  # inside the temporary directory: each symbol's sample rows, removed before the rename
SPILL_IN_MEMORY_BYTES = 256 * 2**20
"""Sample-row values (features, labels, forward returns) that prepare keeps in memory over all symbols;
the symbols beyond it are spilled to disk in the output's temporary directory."""


@dataclass
class _Symbol:
    """One symbol after features and labels: its sample rows, their weights, and where their values were spilled.

    The bar arrays (``times``, ``raw``) are views of the loaded bars; the features and labels of the sample
    rows are in ``spill``, in memory or in files read back memory-mapped a block at a time.
    """

    name: str
    times: np.ndarray
    raw: dict[str, np.ndarray]
    rows: np.ndarray  # bars with every feature and every label, not filled
    weights: dict[int, np.ndarray]  # per horizon, aligned with ``rows``, unnormalised
    stats: dict
    spill: "_Spill"
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # each split's rows as positions in ``rows``


class _Spill:
    """One symbol's sample-row values: ``features`` (n_features, n_rows) float32, ``labels`` (n_horizons, n_rows)
    int8 and ``fwd_returns`` (n_horizons, n_rows) float32, rows in ``_Symbol.rows`` order.

    Held in memory (``arrays``; the features there are those of every bar, as computed) or in ``.npy``
    files under ``directory``. A read from the files maps the file and drops the map before returning,
    so the pages read never pile up in resident memory.
    """

    NAMES = ("features", "labels", "fwd_returns")

    def __init__(self, arrays: dict[str, np.ndarray] | None, directory: Path | None, rows: slice | np.ndarray | None
                 ) -> None:
        self.arrays, self.directory = arrays, directory
        self._rows = rows  # in memory: where the sample rows lie among the features of every bar

    @classmethod
    def keep(cls, features: np.ndarray, labels: dict[int, Labels], rows: np.ndarray, directory: Path | None) -> "_Spill":
        """The values of ``rows``: in memory when ``directory`` is None, else written there one feature (or
        horizon) at a time, so that the features are never copied whole."""
        n_rows = len(rows)
        if rows[-1] - rows[0] + 1 == n_rows:  # one run of bars (the usual case): slices, not gathers
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        label_rows = [lab.label[rows].astype(np.int8) for lab in labels.values()]
        fwd_rows = [lab.fwd_return[rows].astype(np.float32) for lab in labels.values()]
        if directory is None:  # the features of every bar, not a copy of the sample rows': no second copy
            return cls({"features": features, "labels": np.stack(label_rows), "fwd_returns": np.stack(fwd_rows)},
                       None, rows)
        directory.mkdir(parents=True)
        _write_rows(directory / "features.npy", np.float32, (features[j, rows] for j in range(len(features))),
                    (len(features), n_rows))
        _write_rows(directory / "labels.npy", np.int8, label_rows, (len(labels), n_rows))
        _write_rows(directory / "fwd_returns.npy", np.float32, fwd_rows, (len(labels), n_rows))
        return cls(None, directory, None)

    @staticmethod
    def nbytes(n_features: int, n_horizons: int, n_rows: int) -> int:
        """Bytes a symbol of ``n_rows`` bars holds in memory (its sample rows are at most that many)."""
        return n_rows * (4 * n_features + 5 * n_horizons)

    def read(self, name: str, first: int | slice, positions: np.ndarray) -> np.ndarray:
        """``values[first, positions]`` of ``name`` (one of ``NAMES``), in memory."""
        if self.arrays is not None:
            if name == "features":
                rows = self._rows
                positions = rows.start + positions if isinstance(rows, slice) else rows[positions]
            return self.arrays[name][first, positions]
        mapped = np.load(self.directory / f"{name}.npy", mmap_mode="r")
        values = mapped[first, positions]
        if np.may_share_memory(values, mapped):
            values = np.array(values)
        del mapped  # the last reference: unmapped now, before the next read maps more
        return np.asarray(values)

    def release(self) -> None:
        """Free the values (memory or files) once the symbol's rows are written."""
        self.arrays = None
        if self.directory is not None:
            shutil.rmtree(self.directory)


def _write_rows(path: Path, dtype: type, rows: Iterator[np.ndarray], shape: tuple[int, int]) -> None:
    """A C-order ``.npy`` file of ``shape`` written row by row with ordinary writes.

    Ordinary writes (not a writable memory map) so that a full disk is an ``OSError`` here rather than
    a SIGBUS later.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for row in rows:
            handle.write(memoryview(np.ascontiguousarray(row, dtype=dtype)).cast("B"))


@dataclass(frozen=True)
class _Options:
    horizons: tuple[int, ...]
    fractions: tuple[float, float, float] | None
    dates: tuple[object, object] | None
    embargo: int
    scaler: str
    barrier_k: float
    vol_window: int
    fill_gaps: int
    return_attribution: bool
    max_drop_share: float


def prepare_splits(
    bars: pd.DataFrame | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    horizons: Sequence[int] = (5, 20),
    timeframes: Sequence[str] | None = None,
    fractions: Sequence[float] | None = None,
    dates: Sequence[object] | None = None,
    embargo: int | None = None,
    scaler: str = "robust",
    barrier_k: float = 1.0,
    vol_window: int = 100,
    fill_gaps: int = 5,
    return_attribution: bool = False,
    max_drop_share: float = DEFAULT_MAX_DROP_SHARE,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Build a split directory that ``TimeSeriesDataContainer.from_parquet_dir`` reads, from raw bars.

    Args:
        bars: OHLCV bars: a DataFrame, a CSV/parquet file or a directory of them (``bars.load_bars``).
        output_dir: the split directory to write. It must not exist (or be empty) unless ``overwrite``.
        horizons: label horizons in base bars; each gives ``label_h{H}``, ``sample_weight_h{H}``, ``fwd_return_h{H}``.
        timeframes: timeframes to build features on (``1min`` ... ``4h``); None: the nine defaults at or above
            the base resolution. The base resolution is always included.
        fractions: train/val/test fractions of the distinct labelled timestamps (default 0.7/0.15/0.15).
        dates: instead of fractions, the first timestamp of val and of test (UTC when naive).
        embargo: bars dropped at the start of val and test, per symbol; None: the longest horizon.
        scaler: ``robust`` (median/IQR), ``standard``, ``minmax`` or ``none``; fitted on train only.
        barrier_k: barrier width in units of ``vol * sqrt(H)``.
        vol_window: bars of 1-bar log returns in the barrier volatility.
        fill_gaps: gaps of at most this many missing bars are filled with flat bars (0: no filling), while
            the market is open by the calendar inferred from each symbol's bars (``bars.Calendar``).
        return_attribution: multiply the uniqueness weights by the absolute return attribution.
        max_drop_share: refuse when non-finite features or missing labels would drop more than this share of a
            symbol's rows after the warm-up (the drops below it are counted in ``input.per_symbol``).
        overwrite: replace an existing ``output_dir``.
        progress: show a progress bar (tqdm) over the stages and symbols.

    Returns:
        ``output_dir``.

    Raises:
        PrepareError: bad options, bad bars or an unwritable output, with what was wrong, where, and what to do
            (``OutputExistsError`` when the output exists and ``overwrite`` is not set).
    """
    options = _check_options(horizons, fractions, dates, embargo, scaler, barrier_k, vol_window, fill_gaps,
                             return_attribution, max_drop_share)
    for name in [timeframes] if isinstance(timeframes, str) else timeframes or ():
        tfs.parse(name)  # a misspelt timeframe fails before the bars are read
    out = Path(output_dir)
    _check_output(out, overwrite, None if isinstance(bars, pd.DataFrame) else Path(bars))
    tmp, created = _start_output(out)
    try:
        _prepare_into(tmp, out, bars, timeframes, options, overwrite, progress)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not out.exists():
            _remove_empty(created)
    return out


def _prepare_into(tmp: Path, out: Path, bars, timeframes, options: _Options, overwrite: bool, progress: bool) -> None:
    """Every stage after the output checks: compute, write into ``tmp``, rename ``tmp`` to ``out``."""
    with _Progress(progress) as bar:
        bar.stage("read bars")
        loaded = load_bars(bars, fill_gaps=options.fill_gaps)
        frames_ns = tfs.resolve(loaded.resolution_ns, timeframes)
        names = feature_names(frames_ns)
        bar.add(2 * len(loaded.symbols) + 3)
        symbols: list[_Symbol] = []
        held = 0  # bytes of sample-row values kept in memory so far
        with _writing(out):
            for i in range(len(loaded.symbols)):
                # in memory while the kept values stay under the budget (a symbol's bars bound its sample rows)
                size = _Spill.nbytes(len(names), len(options.horizons), int(np.diff(loaded.bounds)[i]))
                in_memory = held + size <= SPILL_IN_MEMORY_BYTES
                symbols.append(_process_symbol(loaded, i, frames_ns, options, bar,
                                               None if in_memory else tmp / _SPILL_DIR))
                held += size if in_memory else 0
        bar.stage("split")
        cuts = cut_times(np.concatenate([s.times[s.rows] for s in symbols]), fractions=options.fractions,
                         dates=options.dates)
        purge = max(options.horizons)
        for s in symbols:
            s.splits = split_rows(s.times, s.rows, cuts=cuts, purge_bars=purge, embargo=options.embargo)
            s.positions = {split: np.searchsorted(s.rows, rows) for split, rows in s.splits.items()}
        _check_splits(symbols, cuts)
        weights = _split_weights(symbols, options.horizons)
        bar.stage("fit scaler")
        scaler = Scaler.fit(options.scaler, _train_columns(symbols, len(names)))
        meta = _metadata(loaded, symbols, names, frames_ns, options, cuts, scaler)
        _write_atomically(tmp, out, overwrite, loaded, symbols, names, scaler, weights, options.horizons, meta, bar)


# --------------------------------------------------------------------------------------------------
# Options and output checks
# --------------------------------------------------------------------------------------------------


def _check_options(horizons, fractions, dates, embargo, scaler, barrier_k, vol_window, fill_gaps,
                   return_attribution, max_drop_share) -> _Options:
    if isinstance(horizons, (str, int)):
        horizons = [horizons]
    hs = tuple(whole_number(h, "each horizon", 1) for h in horizons)
    if not hs or len(set(hs)) != len(hs):
        raise PrepareError(f"horizons must be distinct positive whole numbers of bars, got {list(horizons)}")
    if dates is not None and fractions is not None:
        raise PrepareError("give either fractions or dates for the splits, not both")
    fr = None
    if dates is None:
        try:
            fr = tuple(float(f) for f in (DEFAULT_FRACTIONS if fractions is None else fractions))
        except (TypeError, ValueError):
            fr = ()
        if len(fr) != 3 or min(fr) <= 0 or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
            raise PrepareError(f"fractions must be three positive numbers that sum to 1, got {fractions!r}")
    elif isinstance(dates, str) or len(dates) != 2:
        raise PrepareError(f"dates must be two timestamps (validation start, test start), got {dates!r}")
    try:
        k = float(barrier_k)
    except (TypeError, ValueError):
        k = math.nan
    if not (math.isfinite(k) and k > 0):
        raise PrepareError(f"barrier_k must be a finite number > 0, got {barrier_k!r}")
    try:
        share = float(max_drop_share)
    except (TypeError, ValueError):
        share = math.nan
    if not 0 <= share <= 1:
        raise PrepareError(f"max_drop_share must be a number from 0 to 1, got {max_drop_share!r}")
    return _Options(
        horizons=hs,
        fractions=fr,
        dates=None if dates is None else tuple(dates),
        embargo=max(hs) if embargo is None else whole_number(embargo, "embargo", 0),
        scaler=check_kind(scaler),
        barrier_k=k,
        vol_window=whole_number(vol_window, "vol_window", 2),
        fill_gaps=whole_number(fill_gaps, "fill_gaps", 0),
        return_attribution=bool(return_attribution),
        max_drop_share=share,
    )


def _check_output(out: Path, overwrite: bool, source: Path | None) -> None:
    """Refuse an output path that prepare cannot (or must not) replace, before any work."""
    for ancestor in (out, *out.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is a file" if ancestor == out else f"lies under {ancestor}, which is a file"
                raise PrepareError(f"output {out} {where}; choose a directory path")
            break
    if os.path.ismount(out):
        raise PrepareError(
            f"output {out} is a mount point, which prepare cannot replace by a rename (it writes a temporary "
            f"directory beside the output and renames it into place); write to a directory inside it, e.g. {out / 'splits'}"
        )
    if source is not None:
        target, given = out.resolve(), source.resolve()
        if target == given or target in given.parents:
            raise PrepareError(f"output {out} holds the input {source}; write the splits somewhere else")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise OutputExistsError(f"output directory {out} already exists and is not empty; pass {{option}} to replace "
                                "it, or choose another path")
    if not (out / METADATA_FILE).is_file():
        raise OutputExistsError(f"output directory {out} is not a split directory (it has no {METADATA_FILE}); "
                                "{option} only replaces split directories, so remove it yourself or choose another path")


def _start_output(out: Path) -> tuple[Path, list[Path]]:
    """Remove stale temporaries of ``out``, then create its parents and a marked temporary directory.

    Done before any computation, so an unwritable destination (read-only file system, no permission,
    no space) fails at once. Returns the temporary directory and the parents that were created.
    """
    remove_stale_partials(out)
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()][::-1]
    created: list[Path] = []
    tmp = partial_path(out)
    try:
        for directory in missing:
            directory.mkdir()
            created.append(directory)
        tmp.mkdir()
        (tmp / UNFINISHED_MARKER).write_text(f"mlfactory prepare (pid {os.getpid()}) is writing {out}\n")
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise PrepareError(f"cannot write the output {out}: {_reason(err)}; choose a writable location") from None
    return tmp, created


def _remove_empty(directories: list[Path]) -> None:
    """Remove the parents prepare created, innermost first, where they are still empty."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return


def _reason(err: OSError) -> str:
    """An OSError in words: what failed, on which path."""
    code = errno.errorcode.get(err.errno or 0)
    what = err.strerror or str(err)
    where = f" ({err.filename})" if err.filename else ""
    return f"{what}{where}" + (f" [{code}]" if code else "")


# --------------------------------------------------------------------------------------------------
# Per symbol
# --------------------------------------------------------------------------------------------------


def _process_symbol(bars: Bars, i: int, frames_ns: list[int], options: _Options, bar: "_Progress",
                    spill_dir: Path | None) -> _Symbol:
    """Features, labels and weights of symbol ``i``; its sample rows' values are spilled under ``spill_dir``
    (kept in memory when it is None)."""
    rows = bars.block(i)
    name = bars.symbols[i]
    times = bars.times[rows]
    raw = {c: getattr(bars, c)[rows] for c in RAW_BAR_COLUMNS}
    bar.stage(f"features {name}")
    features, incomplete = symbol_features(times, *(raw[c] for c in RAW_BAR_COLUMNS), timeframes_ns=frames_ns)
    bar.stage(f"labels {name}")
    labels = label_symbol(raw["close"], options.horizons, barrier_k=options.barrier_k, vol_window=options.vol_window)
    has_features = np.ones(len(times), dtype=bool)
    for column in features:
        has_features &= np.isfinite(column)
    has_labels = np.ones(len(times), dtype=bool)
    for lab in labels.values():
        has_labels &= np.isfinite(lab.label)
    real = ~bars.filled[rows]
    kept = np.flatnonzero(has_features & has_labels & real)
    if kept.size == 0:
        raise PrepareError(_no_rows_message(name, times, features, frames_ns, options))
    dropped = _count_drops(name, times, features, has_features, has_labels, real, frames_ns, options)
    weights = {
        h: sample_weights(kept, lab.end[kept], raw["close"], attribution=options.return_attribution)
        for h, lab in labels.items()
    }
    stats = {
        "bars": int(len(times)),
        "filled_bars": int(bars.filled[rows].sum()),
        "first_row_with_all_features": _iso(times[int(np.argmax(has_features))]) if has_features.any() else None,
        "sample_rows": int(kept.size),
        "rows_dropped": dropped,
        "incomplete_bins_dropped": incomplete,
    }
    spill = _Spill.keep(features, labels, kept, spill_dir / str(i) if spill_dir is not None else None)
    return _Symbol(name, times, raw, kept, weights, stats, spill)


def _count_drops(name: str, times: np.ndarray, features: np.ndarray, has_features: np.ndarray,
                 has_labels: np.ndarray, real: np.ndarray, frames_ns: list[int], options: _Options) -> dict[str, int]:
    """Count the real bars that are not sample rows, by reason; refuse when a step drops too many.

    Expected drops are the warm-up (before the first bar with every feature, and the labels' volatility
    warm-up) and the last bars, whose label horizon runs past the data. Anything else, a non-finite
    feature or a missing label in between, is counted, and over ``max_drop_share`` of the rows in
    between it is an error naming the step, the counts and the first bar.
    """
    index = np.arange(len(times))
    first = int(np.argmax(has_features))
    labelled = np.flatnonzero(has_labels)
    between = real & (index >= max(first, int(labelled[0]))) & (index <= int(labelled[-1]))
    no_features = between & ~has_features
    no_labels = between & has_features & ~has_labels
    counts = {
        "warm_up_and_end": int((real & ~between).sum()),
        "non_finite_features": int(no_features.sum()),
        "missing_labels": int(no_labels.sum()),
    }
    total = int(between.sum())
    for step, bad in (("features", no_features), ("labels", no_labels)):
        n = int(bad.sum())
        if n > options.max_drop_share * total:
            row = int(np.argmax(bad))
            detail = ""
            if step == "features":
                column = int(np.argmax(~np.isfinite(features[:, row])))
                detail = f" ({feature_names(frames_ns)[column]} is {features[column, row]})"
            raise PrepareError(
                f"the {step} step would drop {n:,} of {total:,} rows of symbol {name!r} after the warm-up "
                f"({n / total:.1%}, more than max_drop_share {options.max_drop_share:.1%}); the first is "
                f"{_iso(times[row])}{detail}. Look for bad bars before it, or raise the limit if this is expected."
            )
    return counts


def _no_rows_message(name: str, times: np.ndarray, features: np.ndarray, frames_ns: list[int],
                     options: _Options) -> str:
    starts = []
    for label, columns in timeframe_slices(frames_ns):
        ready = np.isfinite(features[columns]).all(axis=0)
        starts.append(f"{label}: {f'bar {int(np.argmax(ready))}' if ready.any() else 'never'}")
    return (
        f"symbol {name!r} has no bar with every feature and every label ({len(times)} bars). Features are "
        f"first complete at: {', '.join(starts)}; labels also need {options.vol_window} bars of volatility and "
        f"{max(options.horizons)} bars after the row. Use more bars or fewer/shorter --timeframes."
    )


# --------------------------------------------------------------------------------------------------
# Splits, weights, scaler
# --------------------------------------------------------------------------------------------------


def _check_splits(symbols: list[_Symbol], cuts: Cuts) -> None:
    for split in SPLITS:
        if sum(len(s.splits[split]) for s in symbols) == 0:
            raise PrepareError(
                f"the {split} split is empty (validation starts {cuts.iso()['val_start']}, test starts "
                f"{cuts.iso()['test_start']}); use more bars, other fractions or dates, or a smaller embargo"
            )


def _positions(s: _Symbol, split: str) -> np.ndarray:
    """The rows of ``split`` as positions in ``s.rows`` (and in its spill)."""
    return s.positions[split]


def _split_weights(symbols: list[_Symbol], horizons: tuple[int, ...]) -> dict[str, dict[int, list[np.ndarray]]]:
    """Per split and horizon, each symbol's weights normalised to mean 1 over the whole split."""
    out: dict[str, dict[int, list[np.ndarray]]] = {}
    for split in SPLITS:
        out[split] = {}
        for h in horizons:
            parts = [s.weights[h][_positions(s, split)] for s in symbols]
            whole = normalise(np.concatenate(parts), f"the {split} split (horizon {h})")
            out[split][h] = np.split(whole, np.cumsum([len(p) for p in parts])[:-1])
    return out


def _train_columns(symbols: list[_Symbol], n_features: int) -> Iterator[np.ndarray]:
    """Each feature's train values over all symbols, as float64 (one feature at a time, read from the spills)."""
    for j in range(n_features):
        yield np.concatenate([s.spill.read("features", j, _positions(s, "train")) for s in symbols]).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def _write_splits(tmp: Path, symbols: list[_Symbol], names: list[str], scaler: Scaler,
                  weights: dict[str, dict[int, list[np.ndarray]]], horizons: tuple[int, ...]) -> None:
    """The three split files, written symbol by symbol (chunks of ``_CHUNK_ROWS`` rows, one row group each);
    each symbol's spill is released once its rows are in every split."""
    import pyarrow.parquet as pq

    schema = split_schema(names, horizons)
    # Dictionary encoding only pays for the symbol; on float features it is slow (7x) and no smaller.
    writers = {}
    try:
        for split in SPLITS:
            writers[split] = pq.ParquetWriter(tmp / split_file(split), schema, use_dictionary=["symbol"])
        for k, s in enumerate(symbols):
            for split in SPLITS:
                _write_symbol(writers[split], schema, s, split, scaler, [weights[split][h][k] for h in horizons])
            s.spill.release()
    finally:
        for writer in writers.values():
            writer.close()


def _write_symbol(writer, schema, s: _Symbol, split: str, scaler: Scaler, weights: list[np.ndarray]) -> None:
    """One symbol's rows of ``split``: times, symbol, scaled features, per horizon label/weight/return, raw bars."""
    import pyarrow as pa

    rows, positions = s.splits[split], _positions(s, split)
    for lo in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[lo : lo + _CHUNK_ROWS]
        at = positions[lo : lo + _CHUNK_ROWS]  # the same rows in the spill
        columns = [pa.array(s.times[chunk], pa.timestamp("ns", tz="UTC")),
                   pa.array([s.name], pa.string()).take(np.zeros(len(chunk), dtype=np.int64))]
        scaled = scaler.transform(s.spill.read("features", slice(None), at).T)  # (rows, features) float32
        columns += [pa.array(scaled[:, j]) for j in range(scaled.shape[1])]
        del scaled
        labels, fwd = s.spill.read("labels", slice(None), at), s.spill.read("fwd_returns", slice(None), at)
        for m, weight in enumerate(weights):
            columns += [pa.array(labels[m]), pa.array(weight[lo : lo + len(chunk)].astype(np.float32)),
                        pa.array(fwd[m])]
        columns += [pa.array(s.raw[c][chunk]) for c in RAW_BAR_COLUMNS]
        writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def _write_atomically(tmp: Path, out: Path, overwrite: bool, bars: Bars, symbols: list[_Symbol], names: list[str],
                      scaler: Scaler, weights: dict, horizons: tuple[int, ...], meta: dict, bar: "_Progress") -> None:
    """Write every file into the marked ``tmp``, then unmark it and rename it to ``out``.

    A previous output at ``out`` is replaced by :func:`mlfactory.atomic.replace_dir`: renamed aside,
    put back if the new one cannot take its place, removed once it has.
    """
    with _writing(out):
        bar.stage("write splits")
        _write_splits(tmp, symbols, names, scaler, weights, horizons)
        shutil.rmtree(tmp / _SPILL_DIR, ignore_errors=True)
        _write_bars(tmp / BARS_FILE, bars)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out.is_dir() and any(out.iterdir()) and not overwrite:  # appeared while we worked
            raise OutputExistsError(f"output directory {out} appeared while preparing; pass {{option}} to replace it")
        (tmp / UNFINISHED_MARKER).unlink()
        replace_dir(tmp, out)


def _write_bars(path: Path, bars: Bars) -> None:
    """``bars.parquet``: the checked bars, converted and written a row group at a time.

    The same file ``bars.to_frame().to_parquet(path, index=False)`` writes (schema with its pandas
    metadata, row groups of pyarrow's default size), without a whole-input DataFrame and Arrow table.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for lo in range(0, len(bars), _BARS_GROUP_ROWS):
            table = pa.Table.from_pandas(bars.to_frame(slice(lo, lo + _BARS_GROUP_ROWS)), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table)
            del table
    finally:
        if writer is not None:
            writer.close()


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing into the temporary directory into one PrepareError line."""
    try:
        yield
    except OSError as err:
        full = err.errno == errno.ENOSPC or "No space left" in str(err)
        full = " The file system is full: free space or choose another output." if full else ""
        raise PrepareError(f"cannot write the splits to {out}: {_reason(err)}; nothing was written.{full}") from None


def _metadata(bars: Bars, symbols: list[_Symbol], names: list[str], frames_ns: list[int], options: _Options,
              cuts: Cuts, scaler: Scaler) -> dict:
    import talib

    from mlfactory.version import __version__

    boundaries, rows = {}, {}
    for split in SPLITS:
        stamps = np.concatenate([s.times[s.splits[split]] for s in symbols])
        boundaries[split] = [_iso(stamps.min()), _iso(stamps.max())]
        rows[split] = int(len(stamps))
    incomplete: dict[str, int] = {}
    for s in symbols:
        for tf, n in s.stats["incomplete_bins_dropped"].items():
            incomplete[tf] = incomplete.get(tf, 0) + n
    return {
        **scaler.to_metadata(names),
        "train_range": boundaries["train"],
        "horizons": list(options.horizons),
        "base_resolution": tfs.label(bars.resolution_ns),
        "timeframes": [tfs.label(tf) for tf in frames_ns],
        "split": {
            "method": "dates" if options.dates is not None else "fractions",
            "fractions": None if options.fractions is None else list(options.fractions),
            **cuts.iso(),
        },
        "split_boundaries": boundaries,
        "rows": rows,
        "purge_bars": max(options.horizons),
        "embargo_bars": options.embargo,
        "labels": {
            "method": "triple_barrier",
            "barrier_k": options.barrier_k,
            "vol_window": options.vol_window,
            "barriers": "close * exp(+-barrier_k * vol * sqrt(H)); vol = std of the last vol_window 1-bar log returns",
        },
        "sample_weights": {
            "method": "average_uniqueness * return_attribution" if options.return_attribution else "average_uniqueness",
            "normalised": "mean 1 within each split",
        },
        "input": {
            **bars.report,
            "fill_gaps": options.fill_gaps,
            "incomplete_bins_dropped": incomplete,
            "per_symbol": {s.name: {k: v for k, v in s.stats.items() if k != "incomplete_bins_dropped"}
                           for s in symbols},
        },
        "bars_file": BARS_FILE,
        "mlfactory_version": __version__,
        "talib_version": talib.__version__,
    }


class _Progress:
    """A tqdm bar over the stages and symbols, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=1, desc="prepare", unit="stage")
        self._started = False

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            if exc[0] is None:
                self._bar.set_description("prepare: done")
                self._bar.update(self._bar.total - self._bar.n)
            else:
                self._bar.leave = False  # the error message follows on a clean line
            self._bar.close()

    def add(self, steps: int) -> None:
        if self._bar is not None:
            self._bar.total += steps
            self._bar.refresh()

    def stage(self, name: str) -> None:
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description(f"prepare: {name}")
