"""ArrayDataModule: user arrays (tables or pre-windowed samples) served to every model, with a run record."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from mlfactory import create_model
from mlfactory.data.arrays import FIRST_TIMESTAMP, ArrayDataModule
from mlfactory.errors import DataError

SEQ_LEN = 8
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "own_arrays.py"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tables():
    """Small (X, y, w) splits of one series, as a user would bring them: 4 features, weights around 1."""
    rng = np.random.default_rng(0)

    def split(n):
        return rng.normal(size=(n, 4)), rng.integers(0, 3, n), rng.uniform(0.5, 1.5, n)

    return {"train": split(400), "val": split(120), "test": split(120)}


def windows(X: np.ndarray, y: np.ndarray, w: np.ndarray, seq_len: int = SEQ_LEN):
    """Pre-windowed samples: the window ending at each row with enough history, and that row's label."""
    view = np.lib.stride_tricks.sliding_window_view(X, seq_len, axis=0)  # (n - seq_len + 1, n_features, seq_len)
    return np.ascontiguousarray(view.transpose(0, 2, 1)), y[seq_len - 1 :], w[seq_len - 1 :]


def random_split(n: int, shape: tuple[int, ...] = (3,), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)), rng.integers(0, 3, n)


def read_run(trainer) -> tuple[dict, dict]:
    run = trainer.log_dir
    status = json.loads(open(f"{run}/status.json").read())
    test = np.load(f"{run}/predictions/test_predictions.npz")
    return status, test


# --- training on it ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [("xgboost", {"n_estimators": 20, "n_jobs": 1}), ("resnet1d", {"n_filters": 4, "learning_rate": 3e-3})],
)
def test_an_estimator_and_a_sequence_model_train_on_tables_with_a_run_record(name, params, tables, make_trainer):
    data = ArrayDataModule(tables["train"], tables["val"], tables["test"], seq_len=SEQ_LEN, batch_size=128)
    trainer = make_trainer(max_epochs=1, name=name)
    trainer.fit(create_model(name, **params), datamodule=data)

    status, test = read_run(trainer)
    assert status["status"] == "complete"
    n_test = len(tables["test"][0])
    sequence = name == "resnet1d"
    expected_rows = np.arange(SEQ_LEN - 1 if sequence else 0, n_test)  # a window needs seq_len - 1 rows before it
    np.testing.assert_array_equal(np.sort(test["row"]), expected_rows)
    np.testing.assert_array_equal(test["label"], tables["test"][1][test["row"]])
    first_test = len(tables["train"][0]) + len(tables["val"][0])  # one synthetic minute per sample, train first
    last = FIRST_TIMESTAMP + np.timedelta64(first_test + n_test - 1, "m")
    assert test["datetime"][test["row"] == n_test - 1][0] == last
    config = json.loads(open(f"{trainer.log_dir}/config/training_config.json").read())
    assert config["data"]["source"] == "arrays" and config["features"][0] == "x0"
    assert config["data"]["shapes"]["test"] == [n_test, tables["test"][0].shape[1]]


def test_pre_windowed_samples_train_sequence_and_tabular_models(tables, make_trainer):
    splits = {name: windows(*arrays) for name, arrays in tables.items()}
    data = ArrayDataModule(splits["train"], splits["val"], splits["test"], batch_size=128)
    assert data.seq_len == SEQ_LEN and data.prewindowed

    model = create_model("itransformer", d_model=8, n_heads=2, num_layers=1, d_ff=16)
    trainer = make_trainer(max_epochs=1, name="itransformer")
    trainer.fit(model, datamodule=data)
    assert model.hparams.n_steps == SEQ_LEN  # sized from the windows
    status, test = read_run(trainer)
    assert status["status"] == "complete"
    samples = data.sample_index(test["row"])  # every window is a sample, identified by its last step's row
    np.testing.assert_array_equal(np.sort(samples), np.arange(len(splits["test"][0])))
    np.testing.assert_array_equal(test["label"], splits["test"][1][samples])

    xgb = make_trainer(max_epochs=1, name="xgboost")
    xgb.fit(create_model("xgboost", n_estimators=20, n_jobs=1), datamodule=data)
    assert read_run(xgb)[0]["status"] == "complete"


def test_pre_windowed_batches_are_the_windows_and_tabular_views_their_last_step():
    X, y = random_split(20, (5, 3))
    w = np.linspace(0.5, 2.0, 20)
    data = ArrayDataModule((X, y, w), random_split(6, (5, 3), 1), random_split(6, (5, 3), 2), input_kind="sequence")
    data.setup("fit")
    batch = data.dataset("train").__getitems__([4, 0, 7])
    torch.testing.assert_close(batch["x"], torch.from_numpy(X[[4, 0, 7]].astype(np.float32)))
    torch.testing.assert_close(batch["w"], torch.from_numpy(w[[4, 0, 7]].astype(np.float32)))
    assert batch["y"].tolist() == y[[4, 0, 7]].tolist()
    assert batch["row"].tolist() == [24, 4, 39] and data.sample_index(batch["row"]).tolist() == [4, 0, 7]
    features, labels, weights = data.arrays("train")
    np.testing.assert_array_equal(features, X[:, -1].astype(np.float32))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(weights, w)
    data.input_kind = "tabular"
    last_step = torch.from_numpy(X[[7], -1].astype(np.float32))
    torch.testing.assert_close(data.dataset("train").__getitems__([7])["x"], last_step)
    split = data.container.split("train")
    assert split.weights.sum() == pytest.approx(w.sum())  # the earlier steps of a window weigh nothing
    assert len(split.window_end_rows(5)) == 20 and len(split.window_end_rows(6)) == 0  # no window spans two


def test_tables_serve_windows_of_consecutive_rows():
    X, y = random_split(30)
    data = ArrayDataModule((X, y), random_split(10), random_split(10), seq_len=4, input_kind="sequence")
    data.setup("fit")
    batch = data.dataset("train").__getitems__([0])
    assert batch["row"].tolist() == [3]  # the first window ends at the fourth row
    torch.testing.assert_close(batch["x"][0], torch.from_numpy(X[:4].astype(np.float32)))
    timestamps = [data.container.split(s).timestamps for s in ("train", "val", "test")]
    assert timestamps[0][0] == FIRST_TIMESTAMP and timestamps[1][0] == FIRST_TIMESTAMP + np.timedelta64(30, "m")
    assert timestamps[2][-1] == FIRST_TIMESTAMP + np.timedelta64(49, "m")


def test_hyper_parameters_hold_settings_and_shapes_not_the_arrays():
    data = ArrayDataModule(random_split(12), random_split(5), random_split(5), batch_size=4)
    assert dict(data.hparams) == {
        "source": "arrays",
        "shapes": {"train": [12, 3], "val": [5, 3], "test": [5, 3]},
        "seq_len": 30,
        "horizon": 1,
        "batch_size": 4,
        "eval_batch_size": None,
        "num_workers": 0,
        "predict_split": "test",
        "input_kind": "tabular",
    }
    assert data.eval_batch_size == 16 and data.feature_names == ["x0", "x1", "x2"]


def test_an_ensemble_with_a_sequence_member_trains_on_pre_windowed_samples(make_trainer):
    splits = [random_split(n, (4, 3), seed) for n, seed in ((60, 0), (20, 1), (20, 2))]
    data = ArrayDataModule(*splits)
    model = create_model(
        "voting", members=[{"name": "xgboost", "n_estimators": 5}, {"name": "lstm", "hidden_size": 4}],
        neural_max_epochs=1,
    )
    trainer = make_trainer(max_epochs=1, name="voting")
    trainer.fit(model, datamodule=data)
    status, test = read_run(trainer)
    assert status["status"] == "complete"
    np.testing.assert_array_equal(np.sort(data.sample_index(test["row"])), np.arange(20))


# --- bad input ------------------------------------------------------------------------------------


def good(n: int = 10):
    return random_split(n)


@pytest.mark.parametrize(
    ("train", "match"),
    [
        (np.zeros((10, 3)), r"train must be a tuple \(X, y\) or \(X, y, w\) of arrays; got a ndarray"),
        ((np.zeros((10, 3)),), r"got a tuple of 1 items"),
        ((np.zeros(10), np.zeros(10)), r"X of train has shape \(10,\); give a table .* or windows"),
        ((np.array([["a"]] * 10), np.zeros(10)), r"X of train has dtype <U1; features must be numbers"),
        ((np.where(np.eye(10, 3) > 0, np.nan, 0.0), np.zeros(10)), r"holds 3 NaN or infinite .* sample 0, feature 0"),
        ((np.full((10, 3), 1e39), np.zeros(10)), r"too large for float32"),
        ((np.zeros((10, 3)), np.zeros(9)), r"y of train has shape \(9,\); it must be \(10,\)"),
        ((np.zeros((10, 3)), np.full(10, 0.5)), r"y of train must hold integer class indices"),
        ((np.zeros((10, 3)), np.arange(10) % 3 - 1), r"0, 1 or 2.*holds -1, 0, 1; labels -1/0/\+1 .* pass y \+ 1"),
        ((np.zeros((10, 3)), np.arange(10) % 4), r"3 output classes\. It holds 0, 1, 2, 3$"),
        ((np.zeros((10, 3)), np.zeros(10), -np.ones(10)), r"w of train must be finite, non-negative and not all zero"),
        ((np.zeros((10, 3)), np.zeros(10), np.ones(4)), r"w of train has shape \(4,\)"),
    ],
)
def test_bad_arrays_are_data_errors_naming_split_and_array(train, match):
    with pytest.raises(DataError, match=match):
        ArrayDataModule(train, good(), good())


def test_splits_of_different_kinds_or_widths_are_refused():
    with pytest.raises(DataError, match=r"train is a table \(n, n_features\) but val is windows"):
        ArrayDataModule(good(), random_split(10, (4, 3)), good())
    with pytest.raises(DataError, match=r"test samples have shape \(4,\) but train samples \(3,\)"):
        ArrayDataModule(good(), good(), random_split(10, (4,)))
    with pytest.raises(DataError, match=r"val samples have shape \(5, 3\) but train samples \(4, 3\).*window length"):
        ArrayDataModule(random_split(10, (4, 3)), random_split(10, (5, 3)), random_split(10, (4, 3)))


def test_seq_len_of_pre_windowed_samples_and_feature_names_are_checked():
    split = random_split(10, (4, 3))
    with pytest.raises(DataError, match=r"seq_len=6 but the arrays are windows of 4 steps"):
        ArrayDataModule(split, split, split, seq_len=6)
    with pytest.raises(DataError, match=r"feature_names must be 3 distinct strings"):
        ArrayDataModule(good(), good(), good(), feature_names=["a", "a", "b"])
    assert ArrayDataModule(good(), good(), good(), feature_names=["a", "b", "c"]).feature_names == ["a", "b", "c"]


# --- the documented example ------------------------------------------------------------------------


def test_the_own_arrays_example_writes_a_complete_run_per_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFACTORY_EXAMPLE_FAST", "1")
    monkeypatch.setenv("MLFACTORY_EXAMPLE_ROOT", str(tmp_path))
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    for name in ("xgboost", "lstm", "resnet1d"):
        runs = list((tmp_path / "lightning_logs" / name).iterdir())
        assert len(runs) == 1 and f"{name}: run written to {runs[0]}" in out
        assert json.loads((runs[0] / "status.json").read_text())["status"] == "complete"
        assert (runs[0] / "predictions" / "test_predictions.npz").is_file()
    assert "resnet1d: test accuracy" in out
