"""Every way a split directory can break the data contract ends in one clear DataError."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.container import SPLITS, TimeSeriesDataContainer, split_file
from mlfactory.errors import DataError, MLFactoryError

Frames = dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def frames(sample_dir) -> Frames:
    return {split: pd.read_parquet(sample_dir / split_file(split)) for split in SPLITS}


def write(frames: Frames, directory: Path, edit: Callable[[Frames], None] | None = None) -> Path:
    copies = {split: frame.copy() for split, frame in frames.items()}
    if edit is not None:
        edit(copies)
    directory.mkdir(parents=True, exist_ok=True)
    for split, frame in copies.items():
        frame.to_parquet(directory / split_file(split), index=False)
    return directory


def load_error(directory: Path, horizon: int = 5) -> str:
    with pytest.raises(DataError) as caught:
        TimeSeriesDataContainer.from_parquet_dir(directory, horizon=horizon)
    assert isinstance(caught.value, MLFactoryError)
    message = str(caught.value)
    assert "\n" not in message  # one line, as the CLI prints it
    return message


def test_valid_copy_loads(frames, tmp_path):
    assert TimeSeriesDataContainer.from_parquet_dir(write(frames, tmp_path), horizon=5).n_features > 0


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere" in message and "--data.data_dir" in message


def test_missing_split_file(frames, tmp_path):
    directory = write(frames, tmp_path)
    (directory / split_file("val")).unlink()
    assert "val_scaled.parquet is missing" in load_error(directory)


def test_truncated_parquet(frames, tmp_path):
    directory = write(frames, tmp_path)
    path = directory / split_file("test")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = load_error(directory)
    assert "test_scaled.parquet" in message and "cannot read" in message


def test_missing_label_column_lists_horizons_present(frames, tmp_path):
    message = load_error(write(frames, tmp_path), horizon=7)
    assert "'label_h7'" in message and "[5, 20]" in message and "--data.horizon" in message


def test_non_numeric_feature(frames, tmp_path):
    def edit(f: Frames) -> None:
        for frame in f.values():
            frame["regime"] = "calm"

    message = load_error(write(frames, tmp_path, edit))
    assert "'regime'" in message and "numeric" in message


def test_all_nan_feature(frames, tmp_path):
    def edit(f: Frames) -> None:
        for frame in f.values():
            frame["empty"] = np.nan

    message = load_error(write(frames, tmp_path, edit))
    assert "'empty'" in message and "entirely NaN" in message


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_in_features(frames, tmp_path, bad_value):
    column = [c for c in frames["train"].columns if c.startswith("ret_")][0]

    def edit(f: Frames) -> None:
        f["val"].loc[f["val"].index[3], column] = bad_value

    message = load_error(write(frames, tmp_path, edit))
    assert "val_scaled.parquet" in message and repr(column) in message and "1 NaN/inf" in message


def test_feature_columns_differ_between_splits(frames, tmp_path):
    column = [c for c in frames["train"].columns if c.startswith("ret_")][0]

    def edit(f: Frames) -> None:
        f["test"] = f["test"].drop(columns=column)

    message = load_error(write(frames, tmp_path, edit))
    assert "test_scaled.parquet" in message and f"missing ['{column}']" in message


def test_empty_split(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["val"] = f["val"].iloc[:0]

    message = load_error(write(frames, tmp_path, edit))
    assert "val_scaled.parquet has no rows" in message


def test_unsorted_timestamps(frames, tmp_path):
    def edit(f: Frames) -> None:
        rows = f["train"].index[[10, 11]]
        f["train"].loc[rows, "datetime"] = f["train"].loc[rows[::-1], "datetime"].to_numpy()

    message = load_error(write(frames, tmp_path, edit))
    assert "not strictly increasing" in message and "train_scaled.parquet" in message


def test_duplicate_timestamps(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["train"].loc[f["train"].index[11], "datetime"] = f["train"]["datetime"].iloc[10]

    assert "not strictly increasing" in load_error(write(frames, tmp_path, edit))


def test_overlapping_split_time_ranges(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["val"] = pd.concat([f["train"].tail(50), f["val"]]).sort_values(["symbol", "datetime"])

    message = load_error(write(frames, tmp_path, edit))
    assert "overlap" in message and "train" in message and "val" in message


def test_labels_outside_minus_one_zero_one(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["train"]["label_h5"] = f["train"]["label_h5"].astype("int64") * 2

    assert "-1, 0 or +1" in load_error(write(frames, tmp_path, edit))


def test_timestamp_column_of_strings(frames, tmp_path):
    def edit(f: Frames) -> None:
        for frame in f.values():
            frame["datetime"] = frame["datetime"].astype(str)

    assert "must be a timestamp" in load_error(write(frames, tmp_path, edit))


def test_negative_sample_weights(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["train"].loc[f["train"].index[0], "sample_weight_h5"] = -1.0

    assert "'sample_weight_h5'" in load_error(write(frames, tmp_path, edit))


def test_text_feature_only_in_val(frames, tmp_path):
    column = [c for c in frames["train"].columns if c.startswith("ret_")][0]

    def edit(f: Frames) -> None:
        f["val"][column] = f["val"][column].astype(str)

    message = load_error(write(frames, tmp_path, edit))
    assert "val_scaled.parquet" in message and repr(column) in message and "numeric" in message


def test_empty_datetime_or_symbol_values(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["test"]["datetime"] = f["test"]["datetime"].astype(object)
        f["test"].loc[f["test"].index[2], "datetime"] = None

    assert "'datetime' has 1 empty values" in load_error(write(frames, tmp_path / "a", edit))

    def edit_symbol(f: Frames) -> None:
        f["train"].loc[f["train"].index[2], "symbol"] = None

    assert "'symbol' has 1 empty values" in load_error(write(frames, tmp_path / "b", edit_symbol))


def test_weights_that_sum_to_zero(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["val"]["sample_weight_h5"] = 0.0

    assert "not all zero" in load_error(write(frames, tmp_path, edit))


def test_single_class_in_train(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["train"]["label_h5"] = 0

    assert "holds only ['neutral']" in load_error(write(frames, tmp_path, edit))


def test_single_row_in_train(frames, tmp_path):
    def edit(f: Frames) -> None:
        f["train"] = f["train"].iloc[:1]

    assert "in 1 row(s)" in load_error(write(frames, tmp_path, edit))
