"""The benchmark scripts' own logic: models_default.py fills its table in sittings (rows merge, a no-signal
score above chance is flagged); data.py's tiled split directory makes each copy a series of its own,
chronological, read by the container."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlfactory.data.container import TimeSeriesDataContainer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER = ["| model | train s | val bal. acc |", "|---|---|---|"]


def _load(script: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _load("models_default.py", "models_default")


@pytest.fixture(scope="module")
def data() -> ModuleType:
    return _load("data.py", "bench_data")


def test_a_sitting_replaces_its_models_rows_and_keeps_the_others(script: ModuleType) -> None:
    old = [*HEADER, "| lstm | 80 | 0.40 |", "| mine | 1 | 0.5 |", "| xgboost | 15 | 0.44 |"]
    merged = script.merged_rows(old, HEADER, ["| lstm | 60 | 0.42 |", "| gru | 20 | 0.41 |"],
                                ["xgboost", "gru", "lstm"])
    assert merged == [*HEADER, "| xgboost | 15 | 0.44 |", "| gru | 20 | 0.41 |", "| lstm | 60 | 0.42 |",
                      "| mine | 1 | 0.5 |"]


def test_a_table_with_other_columns_is_replaced(script: ModuleType) -> None:
    old = ["| model | train s |", "|---|---|", "| lstm | 80 |"]
    assert script.merged_rows(old, HEADER, ["| gru | 20 | 0.41 |"], ["gru", "lstm"]) == [
        *HEADER, "| gru | 20 | 0.41 |"]


def test_the_canary_flags_a_no_signal_score_outside_the_contract_bands(script: ModuleType) -> None:
    # 5,292 test rows, 1,750 up and 1,750 down, horizon 5: bands +-0.058 (balanced accuracy), +-0.087 (AUC)
    support = {"down": 1750, "neutral": 1792, "up": 1750}
    assert script.canary_alarm({"test": 0.38, "auc": 0.56, "support": support}) == ""
    assert "balanced accuracy 0.400 outside 0.333 +- 0.058" in script.canary_alarm(
        {"test": 0.40, "auc": 0.5, "support": support})
    assert "AUC 0.600 outside 0.5 +- 0.087" in script.canary_alarm({"test": 0.34, "auc": 0.60, "support": support})
    assert script.canary_alarm({"error": "failed"}) == ""


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
