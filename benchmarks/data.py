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

    python benchmarks/data.py            # build (or find) the directory and print its path
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
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
# extra bars per symbol on top of rows / 3 per split: covers the feature and barrier-volatility
# warm-up (100 bars), the purge (20) and the embargo (10) of each split
_MARGIN_PER_SYMBOL = 1_200


def cache_root() -> Path:
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


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(bench_split_dir())
