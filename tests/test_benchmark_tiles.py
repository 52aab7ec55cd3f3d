"""benchmarks/data.py's tiled split directory: each copy a series of its own, chronological, read by the container."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlfactory.data.container import TimeSeriesDataContainer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data.py"


@pytest.fixture(scope="module")
def data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiles_are_separate_series_and_the_container_reads_them(data: ModuleType, sample_dir: Path,
                                                                 tmp_path: Path) -> None:
    source_rows = {s: pq.ParquetFile(sample_dir / f"{s}_scaled.parquet").metadata.num_rows for s in data.SPLITS}
    rows = {"train": 2 * source_rows["train"] + 100, "val": source_rows["val"] // 2, "test": 3 * source_rows["test"]}
    tiled = data.tiled_split_dir(rows, root=tmp_path, name="tiled", source=sample_dir)

    container = TimeSeriesDataContainer.from_parquet_dir(tiled, horizon=5)  # the splits' time order is checked here
    source = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5)
    for split, n in rows.items():
        got, original = container.split(split), source.split(split)
        assert len(got) == n
        symbols = pq.read_table(tiled / f"{split}_scaled.parquet", columns=["symbol"]).column("symbol").to_pylist()
        base = pq.read_table(sample_dir / f"{split}_scaled.parquet", columns=["symbol"]).column("symbol").to_pylist()
        expected = [f"{base[i % len(base)]}-t{i // len(base):03d}" for i in range(n)]
        assert symbols == expected
        # the rows are the source's, repeated; no window crosses two copies
        np.testing.assert_array_equal(got.features, np.concatenate([original.features] * 3)[:n])
        blocks = sum(1 for i in range(n) if i == 0 or symbols[i] != symbols[i - 1])
        assert len(got.window_end_rows(30)) == n - blocks * 29
    info = json.loads((tiled / data.TILES_FILE).read_text())
    assert info["rows"] == rows
    assert info["feature_bytes"]["total"] == sum(rows.values()) * container.n_features * 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary sibling left

    stamp = (tiled / "train_scaled.parquet").stat().st_mtime_ns
    assert data.tiled_split_dir(rows, root=tmp_path, name="tiled", source=sample_dir) == tiled
    assert (tiled / "train_scaled.parquet").stat().st_mtime_ns == stamp  # found, not written again


def test_a_split_without_rows_is_refused(data: ModuleType, sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every split needs a whole number of rows >= 1"):
        data.tiled_split_dir({"train": 10, "val": 0, "test": 5}, root=tmp_path, source=sample_dir)
    assert not list(tmp_path.iterdir())
