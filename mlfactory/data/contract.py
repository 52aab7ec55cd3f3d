"""The split contract: what ``mlfactory prepare`` writes and the data loader reads (docs/data.md).

One definition of every name both sides use: the split names, the file names of a split directory,
the reserved columns, the per-horizon column names and the label/class mapping. The writer
(``mlfactory.prepare``) and the reader (``mlfactory.data``) import them from here, so they cannot drift.
Plain constants and string functions only: importing this module costs nothing.

>>> label_column(20), weight_column(20), fwd_return_column(20)
('label_h20', 'sample_weight_h20', 'fwd_return_h20')
>>> split_file("val")
'val_scaled.parquet'
>>> is_reserved("label_h5"), is_reserved("rsi_14_5min")
(True, False)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The splits of a split directory, in time order."""

METADATA_FILE = "scaling_metadata.json"
"""The split directory's description: scaler, features, horizons, cut times, versions."""
BARS_FILE = "bars.parquet"
"""Every checked base bar (repairs included, ``filled`` marks them): what multi-resolution windows read."""
UNFINISHED_MARKER = ".mlfactory-prepare-unfinished"
"""A file that ``mlfactory prepare`` keeps in its output until it is complete; such a directory is refused."""

DATETIME_COLUMN, SYMBOL_COLUMN = "datetime", "symbol"
IDENTITY_COLUMNS: tuple[str, ...] = (DATETIME_COLUMN, SYMBOL_COLUMN)
"""Each row's identity: the UTC timestamp of its bar and its symbol."""
RAW_BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""The raw OHLCV columns, in this order wherever bars are stacked."""

LABEL_PREFIX, WEIGHT_PREFIX, FWD_RETURN_PREFIX = "label_h", "sample_weight_h", "fwd_return_h"
PER_HORIZON_PREFIXES: tuple[str, ...] = (LABEL_PREFIX, WEIGHT_PREFIX, FWD_RETURN_PREFIX)

LABEL_VALUES: tuple[int, ...] = (-1, 0, 1)
"""The values of ``label_h{H}``: down, neutral, up (triple barrier). Model class = label + 1."""
CLASS_NAMES: tuple[str, ...] = ("down", "neutral", "up")
NUM_CLASSES = len(CLASS_NAMES)


def split_file(split: str) -> str:
    """File name of a split inside a split directory."""
    return f"{split}_scaled.parquet"


def label_column(horizon: int) -> str:
    """The label column of horizon ``horizon`` (bars): -1 / 0 / +1."""
    return f"{LABEL_PREFIX}{horizon}"


def weight_column(horizon: int) -> str:
    """The sample-weight column of horizon ``horizon``."""
    return f"{WEIGHT_PREFIX}{horizon}"


def fwd_return_column(horizon: int) -> str:
    """The forward log-return column of horizon ``horizon``."""
    return f"{FWD_RETURN_PREFIX}{horizon}"


def label_horizons(columns: list[str]) -> list[int]:
    """The horizons that have a label column among ``columns``, ascending."""
    return sorted(int(c[len(LABEL_PREFIX):]) for c in columns if re.fullmatch(f"{LABEL_PREFIX}\\d+", c))


def class_mapping() -> dict[str, dict[str, int | str]]:
    """Model class index -> label value and name, recorded beside every prediction."""
    return {str(i): {"label": v, "name": n} for i, (v, n) in enumerate(zip(LABEL_VALUES, CLASS_NAMES))}


def is_reserved(column: str) -> bool:
    """True for columns that are not features: identity, raw bars, per-horizon targets, pandas' index."""
    if column in IDENTITY_COLUMNS or column in RAW_BAR_COLUMNS:
        return True
    if re.fullmatch(r"__index_level_\d+__", column):  # an unnamed pandas index that to_parquet kept
        return True
    return any(re.fullmatch(f"{p}\\d+", column) for p in PER_HORIZON_PREFIXES)


def split_schema(features: list[str], horizons: tuple[int, ...]) -> "pa.Schema":
    """The arrow schema of a split file as ``prepare`` writes it: identity, float32 features, then per
    horizon the int8 label, float32 weight and float32 forward return, then the float64 raw bars."""
    import pyarrow as pa

    fields = [pa.field(DATETIME_COLUMN, pa.timestamp("ns", tz="UTC")), pa.field(SYMBOL_COLUMN, pa.string())]
    fields += [pa.field(n, pa.float32()) for n in features]
    for h in horizons:
        fields += [pa.field(label_column(h), pa.int8()), pa.field(weight_column(h), pa.float32()),
                   pa.field(fwd_return_column(h), pa.float32())]
    fields += [pa.field(c, pa.float64()) for c in RAW_BAR_COLUMNS]
    return pa.schema(fields)
