"""The container's arrays and views: shapes, identity, windows that are slices of the split."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch

from mlfactory.data.container import TimeSeriesDataContainer, class_mapping, split_file
from mlfactory.data.windows import SequenceDataset


@pytest.fixture(scope="module")
def container(sample_dir) -> TimeSeriesDataContainer:
    return TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5)


def test_each_split_is_one_contiguous_float32_array(container, sample_dir):
    frame = pd.read_parquet(sample_dir / split_file("train"))
    X, y, w = container.get_sklearn_arrays("train")
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert X.shape == (len(frame), container.n_features)
    np.testing.assert_allclose(X[:, 0], frame[container.feature_names[0]].to_numpy(np.float32))
    np.testing.assert_array_equal(y, frame["label_h5"].to_numpy() + 1)
    np.testing.assert_allclose(w, frame["sample_weight_h5"].to_numpy(np.float32))
    # the views are the container's own arrays, not copies
    assert X is container.split("train").features


def test_features_exclude_every_reserved_column(container):
    reserved = {"datetime", "symbol", "open", "high", "low", "close", "volume"}
    assert not reserved & set(container.feature_names)
    assert not [c for c in container.feature_names if c.startswith(("label_h", "sample_weight_h", "fwd_return_h"))]


def test_horizon_selects_labels_and_weights(sample_dir):
    h20 = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=20)
    frame = pd.read_parquet(sample_dir / split_file("val"))
    np.testing.assert_array_equal(h20.split("val").labels, frame["label_h20"].to_numpy() + 1)
    assert h20.split("val").fwd_returns is not None


def test_class_mapping_is_down_neutral_up():
    assert class_mapping() == {
        "0": {"label": -1, "name": "down"},
        "1": {"label": 0, "name": "neutral"},
        "2": {"label": 1, "name": "up"},
    }


def test_window_equals_the_rows_it_ends_at(container):
    seq_len = 16
    dataset = container.get_pytorch_sequences("val", seq_len)
    split = container.split("val")
    for index in (0, 1, len(dataset) // 2, len(dataset) - 1):
        end = int(dataset.rows[index])
        expected = split.features[end - seq_len + 1 : end + 1]
        np.testing.assert_array_equal(dataset[index]["x"].numpy(), expected)
        assert int(dataset[index]["y"]) == split.labels[end]


def test_batch_gather_equals_stacked_windows(container):
    dataset = container.get_pytorch_sequences("train", 8)
    indices = [5, 0, 99, len(dataset) - 1]
    batch = dataset.__getitems__(indices)
    assert batch["x"].shape == (4, 8, container.n_features)
    for k, index in enumerate(indices):
        np.testing.assert_array_equal(batch["x"][k].numpy(), dataset.window(index))
    np.testing.assert_array_equal(batch["row"].numpy(), dataset.rows[indices].numpy())


def test_no_window_crosses_a_symbol_boundary(container):
    seq_len = 25
    split = container.split("test")
    dataset = container.get_pytorch_sequences("test", seq_len)
    starts = dataset.rows.numpy() - seq_len + 1
    codes = split.symbol_codes
    assert np.all(codes[starts] == codes[dataset.rows.numpy()])
    # every symbol loses exactly its first seq_len - 1 rows, and nothing else
    per_symbol = np.bincount(codes, minlength=len(split.symbols))
    assert len(dataset) == int(np.sum(np.maximum(per_symbol - (seq_len - 1), 0)))


def test_window_is_a_view_not_a_copy(container):
    dataset = container.get_pytorch_sequences("train", 30)
    assert np.shares_memory(dataset.window(10), container.split("train").features)


def test_building_the_sequence_view_allocates_no_per_sample_copies(container):
    split = container.split("train")
    tracemalloc.start()
    dataset = SequenceDataset(split, seq_len=60)
    batch = dataset.__getitems__(list(range(64)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    materialised = len(dataset) * 60 * container.n_features * 4
    # index arrays (a few int64 per row) and one batch, never the (n, seq_len, n_features) tensor
    assert peak < 0.1 * materialised
    assert batch["x"].shape[0] == 64


def test_sample_identity_is_the_last_bar(container, sample_dir):
    frame = pd.read_parquet(sample_dir / split_file("test"))
    dataset = container.get_pytorch_sequences("test", 10)
    rows = dataset.rows[:5].numpy()
    identity = container.split("test").identity(rows)
    assert list(identity["datetime"]) == list(frame["datetime"].iloc[rows])
    assert list(identity["symbol"]) == list(frame["symbol"].iloc[rows])


def test_interleaved_symbols_are_grouped_once_on_load(sample_dir, tmp_path):
    for split in ("train", "val", "test"):
        frame = pd.read_parquet(sample_dir / split_file(split))
        frame.sort_values(["datetime", "symbol"], kind="stable").to_parquet(tmp_path / split_file(split))
    grouped = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5).split("train")
    interleaved = TimeSeriesDataContainer.from_parquet_dir(tmp_path, horizon=5).split("train")
    for a, b in ((grouped, interleaved),):
        key_a = pd.DataFrame({"t": a.timestamps, "s": np.asarray(a.symbols)[a.symbol_codes]})
        key_b = pd.DataFrame({"t": b.timestamps, "s": np.asarray(b.symbols)[b.symbol_codes]})
        order_a = key_a.sort_values(["s", "t"]).index.to_numpy()
        order_b = key_b.sort_values(["s", "t"]).index.to_numpy()
        np.testing.assert_array_equal(a.features[order_a], b.features[order_b])
    # windows of the interleaved file still stay inside one symbol
    dataset = SequenceDataset(interleaved, 12)
    ends = dataset.rows.numpy()
    assert np.all(interleaved.symbol_codes[ends - 11] == interleaved.symbol_codes[ends])


def test_split_without_symbol_column_is_one_segment(sample_dir, tmp_path):
    for split in ("train", "val", "test"):
        frame = pd.read_parquet(sample_dir / split_file(split))
        frame = frame[frame["symbol"] == frame["symbol"].iloc[0]].drop(columns="symbol")
        frame.to_parquet(tmp_path / split_file(split))
    container = TimeSeriesDataContainer.from_parquet_dir(tmp_path, horizon=5)
    assert container.split("train").symbols == ("",)
    assert len(container.get_pytorch_sequences("train", 5)) == len(container.split("train")) - 4


def test_tabular_batch_is_one_gather(container):
    dataset = container.get_tabular_dataset("val")
    batch = dataset.__getitems__([3, 1, 2])
    assert batch["x"].shape == (3, container.n_features)
    np.testing.assert_array_equal(batch["x"].numpy(), container.split("val").features[[3, 1, 2]])
    assert batch["y"].dtype == torch.long and batch["w"].dtype == torch.float32


def test_balanced_classes_give_each_class_the_same_training_weight(container):
    balanced = container.with_balanced_classes()
    train = balanced.split("train")
    totals = np.bincount(train.labels, weights=train.weights, minlength=3)
    np.testing.assert_allclose(totals, totals.mean(), rtol=1e-5)
    # the same factors apply to val and test; features are shared, not copied
    factors = np.asarray(balanced.class_factors)
    for name in ("val", "test"):
        original, scaled = container.split(name), balanced.split(name)
        np.testing.assert_allclose(scaled.weights, original.weights * factors[original.labels], rtol=1e-6)
        assert scaled.features is original.features


READ_PEAK_SCRIPT = """
import sys
import pyarrow as pa
from mlfactory.data.container import TimeSeriesDataContainer
container = TimeSeriesDataContainer.from_parquet_dir(sys.argv[1], horizon=5)
features = sum(container.split(s).features.nbytes for s in ("train", "val", "test"))
print(pa.default_memory_pool().max_memory() / features)
"""


def test_reading_never_holds_a_whole_split_in_arrow_memory(sample_dir, tmp_path):
    # the features are decoded a column at a time into the split's array: Arrow's pool peaks at about one
    # column, where a whole-table read (the former path) held every split's table at once (measured 1.19x
    # of the features' bytes on the default data, 1.55x on 300k x 180)
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):  # widen to 200 features, as real splits are
        frame = pd.read_parquet(sample_dir / split_file(split))
        wide = {f"noise_{j:03d}": rng.standard_normal(len(frame)).astype(np.float32) for j in range(170)}
        pd.concat([frame, pd.DataFrame(wide, index=frame.index)], axis=1).to_parquet(tmp_path / split_file(split))
    result = subprocess.run([sys.executable, "-c", READ_PEAK_SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=True)
    assert float(result.stdout.strip()) < 0.3
