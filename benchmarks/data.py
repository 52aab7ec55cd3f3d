"""The benchmark data: the project's generator scaled to 50,000 rows x 180 features per split.

``bench_split_dir()`` returns a split directory that ``TimeSeriesDataContainer.from_parquet_dir``
reads (docs/data.md), built once and cached.

How it is made (deterministic; the same arguments give byte-identical arrays):

1. ``mlfactory.data.synthetic.make_sample_splits`` (the generator's bars through ``mlfactory prepare``
   on the base timeframe) with 3 symbols of ``rows * 3 / 3 + margin`` bars each and fractions 1/3,
   1/3, 1/3, so that every split holds a little more than ``rows`` labelled, purged and embargoed rows
   with prepare's 30 scaled 1-minute features and labels for horizons 5 and 20.
2. Each split is cut to exactly ``rows`` rows: the first ``rows / 3`` rows of each symbol's block
   (the split stays grouped by symbol and sorted in time, and the splits stay chronological).
3. The 30 features are widened to ``n_features`` (180) columns:

   - the 30 features, as they are (``ret_1_1min`` ... ``ema_dist_50_1min``);
   - lagged copies ``<feature>_lag{k}`` for k = 1..5 (150 columns), shifted within each symbol's
     block of the split, with the first k rows of a block set to 0.0 (the train median after scaling);
   - seeded Gaussian noise columns ``noise_00`` ... (any remaining columns), drawn from
     ``numpy.random.default_rng([seed, split_index])``.

   All features are float32. Labels, weights, forward returns, raw bars, ``datetime`` and ``symbol``
   are the generator's own.

4. No ``scaling_metadata.json`` (it is optional): prepare's covers only its 30 features. So the
   features are taken as already scaled everywhere, inference bundles included.

Version ``v3`` (this recipe); ``v2`` widened the generator's former 13 hand-made features with 12 lags
and noise to the same 50,000 x 180 float32 shape, which is what the benchmarks' ratios depend on.

The directory lives under ``$MLFACTORY_BENCH_CACHE`` (default ``~/.cache/mlfactory/``) as
``bench-<rows>x<n_features>-v3``, written atomically (a temporary sibling, then a rename).

Larger directories (``tiled_split_dir()``, for memory and time at millions of rows: the peers'
benchmark and the ten-million-row one) are that directory's splits *tiled*: each split repeated
until it holds the rows asked for, copy ``i`` of a split with its symbols renamed ``<symbol>-t<i>``
(``SYNA-t000``, ``SYNA-t001``, ...), so that every copy is a series of its own and no window crosses
two copies. Timestamps are the source's, so each split keeps its time range and the splits stay
chronological (train before val before test). The rows repeat: what a model learns or scores on such
a directory means nothing; it measures memory and time. It is written one tile (50,000 rows, one row
group) at a time, so memory stays at one tile and the writer's buffers (314 MiB peak resident at
1.6 million rows), under
``$MLFACTORY_BENCH_CACHE`` as ``tiled-<train>-<val>-<test>-v3t1`` with ``tiles.json`` (rows, features,
feature bytes per split) beside the splits, atomically as above.

    python benchmarks/data.py                                  # build (or find) the 50k directory, print its path
    python benchmarks/data.py --tiled 7000000 1500000 1500000  # the ten-million-row tiled directory (~11 GB on disk)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

ROWS = 50_000
N_FEATURES = 180
SEQ_LEN = 60
HORIZON = 5
MAX_LAG = 5
SYMBOLS = ("SYNA", "SYNB", "SYNC")
SPLITS = ("train", "val", "test")
VERSION = "v3"
TILED_VERSION = "t1"  # the tiling recipe of tiled_split_dir, on top of VERSION
TILES_FILE = "tiles.json"
_DISK_MARGIN = 2 * 2**30  # free disk a tiled build leaves at least, beyond its own files
# extra bars per symbol on top of rows / 3 per split: covers the feature and barrier-volatility
# warm-up (100 bars), the purge (20) and the embargo (10) of each split
_MARGIN_PER_SYMBOL = 1_200


def cache_root() -> Path:
    """Where the benchmark data is cached: ``$MLFACTORY_BENCH_CACHE``, else ``~/.cache/mlfactory``."""
    root = os.environ.get("MLFACTORY_BENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mlfactory"


def bench_split_dir(rows: int = ROWS, n_features: int = N_FEATURES, seed: int = 0) -> Path:
    """The cached split directory of ``rows`` rows x ``n_features`` features per split (built on first use)."""
    target = cache_root() / f"bench-{rows}x{n_features}-{VERSION}"
    if all((target / f"{s}_scaled.parquet").is_file() for s in SPLITS):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _build(tmp, rows, n_features, seed)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "test_scaled.parquet").is_file():
                raise  # another process did not finish it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build(out: Path, rows: int, n_features: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlfactory.data.synthetic import make_sample_splits

    per_symbol = _per_symbol_rows(rows)
    with tempfile.TemporaryDirectory(prefix="mlfactory-bench-src-") as scratch:
        source = make_sample_splits(
            Path(scratch) / "splits",
            n_bars=per_symbol[0] * len(SPLITS) + _MARGIN_PER_SYMBOL,
            symbols=SYMBOLS,
            timeframes=("1min",),
            fractions=(1 / 3, 1 / 3, 1 - 2 / 3),
            seed=seed,
        )
        features = json.loads((source / "scaling_metadata.json").read_text())["features"]
        n_noise = n_features - len(features) * (1 + MAX_LAG)
        if n_noise < 0:
            raise ValueError(f"n_features must be at least {len(features) * (1 + MAX_LAG)}, got {n_features}")
        out.mkdir(parents=True)
        for split_index, split in enumerate(SPLITS):
            table = pq.read_table(source / f"{split}_scaled.parquet")
            keep = _first_rows_per_symbol(table.column("symbol").to_numpy(zero_copy_only=False), per_symbol, split)
            table = table.take(pa.array(keep))
            starts = _block_starts(table.column("symbol").to_numpy(zero_copy_only=False))
            columns: dict[str, np.ndarray] = {}
            base = {f: table.column(f).to_numpy().astype(np.float32) for f in features}
            columns.update(base)
            for lag in range(1, MAX_LAG + 1):
                for f in features:
                    columns[f"{f}_lag{lag}"] = _lag_within_blocks(base[f], lag, starts)
            rng = np.random.default_rng([seed, split_index])
            for i in range(n_noise):
                columns[f"noise_{i:02d}"] = rng.standard_normal(len(keep), dtype=np.float32)
            reserved = [c for c in table.column_names if c not in features]
            head = [c for c in reserved if c in ("datetime", "symbol")]
            tail = [c for c in reserved if c not in head]
            arrays = [table.column(c) for c in head] + [pa.array(v) for v in columns.values()]
            arrays += [table.column(c) for c in tail]
            names = head + list(columns) + tail
            pq.write_table(pa.table(arrays, names=names), out / f"{split}_scaled.parquet")


def _per_symbol_rows(rows: int) -> list[int]:
    base, extra = divmod(rows, len(SYMBOLS))
    return [base + (1 if i < extra else 0) for i in range(len(SYMBOLS))]


def _first_rows_per_symbol(symbols: np.ndarray, counts: list[int], split: str) -> np.ndarray:
    keep = []
    for symbol, count in zip(SYMBOLS, counts):
        rows = np.flatnonzero(symbols == symbol)
        if len(rows) < count:
            raise RuntimeError(f"{split}: symbol {symbol} has {len(rows)} rows, need {count}; raise _MARGIN_PER_SYMBOL")
        keep.append(rows[:count])
    return np.concatenate(keep)


def _block_starts(symbols: np.ndarray) -> np.ndarray:
    """For each row, the first row of its (contiguous) symbol block."""
    boundary = np.ones(len(symbols), dtype=bool)
    boundary[1:] = symbols[1:] != symbols[:-1]
    starts = np.flatnonzero(boundary)
    return starts[np.cumsum(boundary) - 1]


def _lag_within_blocks(values: np.ndarray, lag: int, starts: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values)
    out[lag:] = values[:-lag]
    out[np.arange(len(values)) - starts < lag] = 0.0
    return out


def tiled_split_dir(rows: Mapping[str, int], root: Path | None = None, name: str | None = None,
                    source: Path | None = None) -> Path:
    """A split directory whose splits are the benchmark's splits tiled to ``rows[split]`` rows each (built on first use).

    Args:
        rows: rows per split, e.g. ``{"train": 7_000_000, "val": 1_500_000, "test": 1_500_000}``; every
            split needs at least one row.
        root: the parent folder (default ``cache_root()``).
        name: the folder's name (default ``tiled-<train>-<val>-<test>-v3t1``).
        source: the split directory to tile (default ``bench_split_dir()``, 50,000 rows per split).

    Copy ``i`` of a split (the source split; the last copy cut short) has symbols ``<symbol>-t<i:03d>`` and
    the source's timestamps, so no window crosses copies and the splits stay chronological. The rows
    are repeats: models' scores on it mean nothing, it is for measuring memory and time. Written one
    tile at a time into a temporary sibling that is renamed when complete; ``tiles.json`` holds the
    rows, feature names and feature bytes (``rows x n_features x 4``) per split.

    Raises:
        ValueError: a split missing from ``rows`` or given fewer than one row.
        OSError: too little free disk for the files (the estimate and what is free are named).
    """
    counts = {split: rows.get(split, 0) for split in SPLITS}
    bad = {split: n for split, n in counts.items() if not isinstance(n, int) or n < 1}
    if bad:
        raise ValueError(f"tiled_split_dir: every split needs a whole number of rows >= 1, got {bad}")
    root = cache_root() if root is None else Path(root)
    target = root / (name or f"tiled-{counts['train']}-{counts['val']}-{counts['test']}-{VERSION}{TILED_VERSION}")
    source = bench_split_dir() if source is None else Path(source)
    if (target / TILES_FILE).is_file():
        built_from = json.loads((target / TILES_FILE).read_text()).get("source")
        if built_from != str(source):
            raise ValueError(f"tiled_split_dir: {target} holds tiles of {built_from}, not of {source}; "
                             "pass another name= or delete it")
        return target
    _check_disk(source, counts, root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        info = {"source": str(source), "rows": counts, "features": None, "feature_bytes": {}}
        for split in SPLITS:
            features = _write_tiles(source / f"{split}_scaled.parquet", tmp / f"{split}_scaled.parquet", counts[split])
            info["features"] = features
            info["feature_bytes"][split] = counts[split] * len(features) * 4
        info["feature_bytes"]["total"] = sum(info["feature_bytes"].values())
        (tmp / TILES_FILE).write_text(json.dumps(info, indent=1))
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / TILES_FILE).is_file():
                raise  # another process did not finish it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_tiles(source: Path, out: Path, rows: int) -> list[str]:
    """``source`` repeated into ``out`` until it holds ``rows`` rows, one tile (= one row group) at a time; the feature names."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mlfactory.data.contract import is_reserved

    table = pq.read_table(source)
    symbol_at = table.column_names.index("symbol")
    symbols = table.column("symbol").cast(pa.string())
    if table.schema.field("symbol").type != pa.string():
        raise TypeError(f"{source}: symbol column is {table.schema.field('symbol').type}, expected string")
    with pq.ParquetWriter(out, table.schema) as writer:
        for i in range(math.ceil(rows / table.num_rows)):
            n = min(table.num_rows, rows - i * table.num_rows)
            renamed = pc.binary_join_element_wise(symbols.slice(0, n), f"-t{i:03d}", "")
            tile = table.slice(0, n).set_column(symbol_at, table.schema.field("symbol"), renamed.cast(symbols.type))
            writer.write_table(tile, row_group_size=table.num_rows)
    return [c for c in table.column_names if not is_reserved(c)]


def _check_disk(source: Path, counts: Mapping[str, int], root: Path) -> None:
    import pyarrow.parquet as pq

    need = 0
    for split in SPLITS:
        path = source / f"{split}_scaled.parquet"
        need += math.ceil(counts[split] / max(1, pq.ParquetFile(path).metadata.num_rows)) * path.stat().st_size
    probe = root if root.exists() else next(p for p in root.parents if p.exists())
    free = shutil.disk_usage(probe).free
    if free < need + _DISK_MARGIN:
        raise OSError(f"tiled_split_dir: {root} has {free / 2**30:.1f} GiB free; the tiled splits need about "
                      f"{need / 2**30:.1f} GiB plus {_DISK_MARGIN / 2**30:.0f} GiB to spare. Free disk or set "
                      "MLFACTORY_BENCH_CACHE to a larger disk")


def main() -> None:
    """Build (or find) the benchmark directory, or a tiled one with ``--tiled TRAIN VAL TEST``, and print its path."""
    parser = argparse.ArgumentParser(description="Build (or find) the benchmark split directory and print its path.")
    parser.add_argument("--tiled", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                        help="rows per split of a tiled directory (e.g. 7000000 1500000 1500000)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(tiled_split_dir(dict(zip(SPLITS, args.tiled))) if args.tiled else bench_split_dir())


if __name__ == "__main__":
    main()
