"""Batch inference on files of any size: read in chunks, predict, append to a parquet file.

Memory is bounded by the chunk (and, for parquet input, the input's row groups), not by the file:
the input is read with ``ParquetFile.iter_batches`` or ``pandas.read_csv(chunksize=...)``, and each
chunk's predictions are written as one row group with ``ParquetWriter``. Only the columns the model
needs are read. The output is written to a ``.partial`` temporary beside it and renamed when complete,
so a failed run leaves no output that looks valid; what a killed run left is removed by the next run
that writes the same output (:mod:`mlfactory.atomic`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pandas as pd

from mlfactory.atomic import remove_stale_partials, replacing
from mlfactory.data.contract import RAW_BAR_COLUMNS
from mlfactory.errors import DataError
from mlfactory.inference.predictor import DATETIME, SYMBOL, output_frame

if TYPE_CHECKING:
    import pyarrow as pa

    from mlfactory.inference.bundle import ModelBundle

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
DEFAULT_CHUNK_ROWS = 65_536


def predict_file(
    bundle: "ModelBundle",
    input: str | Path,
    output: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int = 2048,
    overwrite: bool = False,
    progress: bool = True,
) -> int:
    """Predict every row of ``input`` (parquet or CSV) into the parquet file ``output``; return the row count.

    Output rows follow the input's row order; the columns are those of :meth:`ModelBundle.predict`.

    Raises:
        DataError: the input is missing, of an unknown type, has no rows, lacks feature columns (all are
            named) or holds bad values; the output is the input file; the output exists and
            ``overwrite`` is false.
    """
    from tqdm.auto import tqdm

    input, output = Path(input), Path(output)
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not output.name.endswith(PARQUET_SUFFIXES):
        raise DataError(f"output {output} must be a parquet file (.parquet or .pq)")
    if same_file(input, output):
        raise DataError(
            f"output {output} is the input file {input}: the predictions would replace the features. "
            "Choose another output path"
        )
    if output.exists() and not overwrite:
        raise DataError(f"output {output} exists; pass --overwrite to replace it, or choose another path")
    total, chunks = read_chunks(input, bundle.features, chunk_rows)

    import pyarrow.parquet as pq

    schema = output_schema(bundle.class_names, bundle.class_labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)
    predictor = bundle.predictor(batch_size=batch_size)
    rows = 0
    with replacing(output) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer, tqdm(
            total=total, unit="rows", unit_scale=True, desc=f"predict {input.name}", disable=not progress
        ) as bar:
            for frame in chunks:
                if frame.empty:  # a header-only CSV reads as one empty chunk
                    continue
                writer.write_table(to_table(predictor(frame), schema))
                rows += len(frame)
                bar.update(len(frame))
        if rows == 0:
            raise DataError(_no_rows(input))
    return rows


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same path once resolved (symlinks, ``..``, spellings) or a hard link."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _no_rows(path: Path) -> str:
    return f"input {path} has no rows to predict; pass a file with at least one row of features"


def read_chunks(path: Path, features: list[str], chunk_rows: int) -> tuple[int | None, Iterator[pd.DataFrame]]:
    """(total rows or None, chunks of at most ``chunk_rows`` rows holding the features, datetime and symbol).

    Missing feature columns are reported from the file's header, before any row is read.
    """
    if not path.is_file():
        raise DataError(f"input {path} does not exist; pass a parquet or CSV file of features")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        try:
            # no pre-buffering: it caches the column chunks of every row group read so far (memory grows with
            # the file); a buffered stream reads a row group's pages as the batches need them
            reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=8 << 20)
        except Exception as err:  # pyarrow raises several unrelated types for damaged files
            raise DataError(f"cannot read {path} as parquet ({type(err).__name__}: {err})") from None
        columns = _columns(path, reader.schema_arrow.names, features)
        if reader.metadata.num_rows == 0:
            raise DataError(_no_rows(path))
        batches = reader.iter_batches(batch_size=chunk_rows, columns=columns)
        return reader.metadata.num_rows, (batch.to_pandas() for batch in batches)
    if name.endswith(CSV_SUFFIXES):
        try:
            header = pd.read_csv(path, nrows=0).columns.tolist()
        except pd.errors.EmptyDataError:
            raise DataError(f"input {path} is empty: it has no header and no rows to predict") from None
        except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
            raise DataError(f"cannot read {path} as CSV ({type(err).__name__}: {err})") from None
        columns = _columns(path, header, features)
        # a float's decimal text must read back as exactly that float: pandas 3's parser does; older
        # ones need round_trip (their default can be one unit off in the last place)
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        reader = pd.read_csv(path, usecols=columns, chunksize=chunk_rows, **exact)
        return None, iter(reader)
    raise DataError(f"input {path}: unknown file type; use parquet ({', '.join(PARQUET_SUFFIXES)}) or CSV ({', '.join(CSV_SUFFIXES)})")


def _columns(path: Path, present: list[str], features: list[str]) -> list[str]:
    missing = [f for f in features if f not in present]
    if missing:
        raise DataError(
            f"{path} is missing {len(missing)} of the model's {len(features)} feature columns: {missing}. "
            "Give every feature the model was trained on, under the same names (bundle.json lists them)."
        )
    return [c for c in (DATETIME, SYMBOL) if c in present] + features


def output_schema(class_names: list[str], class_labels: list[int]) -> "pa.Schema":
    """The prediction file's columns and types, with pandas' metadata (so nullable classes read back as Int8)."""
    import numpy as np
    import pyarrow as pa

    schema = pa.schema(
        [pa.field(DATETIME, pa.timestamp("ns", tz="UTC")), pa.field(SYMBOL, pa.string())]
        + [pa.field(f"p_{name}", pa.float32()) for name in class_names]
        + [
            pa.field("predicted_class", pa.int8()),
            pa.field("predicted_label", pa.int8()),
            pa.field("confidence", pa.float32()),
            pa.field("has_history", pa.bool_()),
        ]
    )
    empty = output_frame(np.zeros(0, np.int64), pd.Series([], dtype=str), np.zeros((0, 3), np.float32),
                         np.zeros(0, bool), class_names, class_labels)
    return to_table(empty, schema).schema


def to_table(frame: pd.DataFrame, schema: "pa.Schema") -> "pa.Table":
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


# --- files -------------------------------------------------------------------------------------------
def looks_like_bars(path: str | os.PathLike[str], features: list[str]) -> bool:
    """True for a directory, or a file with open/high/low/close/volume (any case) and none of the feature columns: raw bars.

    A table with some feature columns is a feature table (a missing feature is then an error that names it)."""
    path = Path(path)
    if path.is_dir():  # a directory of bar files, one per symbol, as prepare reads it
        return True
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        elif name.endswith((".csv", ".csv.gz", ".txt")):
            from mlfactory.prepare.bars import _sniff_separator

            columns = list(pd.read_csv(path, sep=_sniff_separator(path), nrows=0).columns)
        else:
            return False
    except Exception:  # unreadable: the feature path reports it in its own words
        return False
    normal = {str(c).strip().strip("<>").strip().lower() for c in columns}
    return all(c in normal for c in RAW_BAR_COLUMNS) and not any(f in columns for f in features)


def predict_bars_file(bundle: "ModelBundle", input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                      batch_size: int = 2048, overwrite: bool = False) -> int:
    """Predict every real bar of the raw-bar file ``input`` into the parquet file ``output``; return the row count.

    The bars are read whole (their memory is a few numbers per bar); the output is written to a temporary and
    renamed when complete, so a failed run leaves no output that looks valid.

    Raises:
        DataError: the output exists (without ``overwrite``) or is not parquet; the bars are wrong.
        BundleError: the bundle has no recipe.
    """
    import pyarrow.parquet as pq

    from mlfactory.inference.bars import predict_bars

    output = Path(output)
    if not output.name.endswith((".parquet", ".pq")):
        raise DataError(f"output {output} must be a parquet file (.parquet or .pq)")
    if output.exists() and not overwrite:
        raise DataError(f"output {output} exists; pass --overwrite to replace it, or choose another path")
    frame = predict_bars(bundle, input, batch_size=batch_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)
    with replacing(output) as tmp:
        pq.write_table(to_table(frame, output_schema(bundle.class_names, bundle.class_labels)), tmp)
    return len(frame)
