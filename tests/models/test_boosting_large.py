"""Boosting on large splits: the batched, no-copy paths give what the library gives on the gathered arrays.

docs/performance.md, "Boosting on large splits": a row subset (cv folds, tuning trials) is fed to
XGBoost in row batches instead of as ``X[rows]``; the train metrics are predicted in batches.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mlfactory.data.datamodule import FactoryDataModule
from mlfactory.data import split as split_module
from mlfactory.data.split import SplitRows
from mlfactory.registry import create_model

PARAMS = {"n_estimators": 40, "early_stopping_rounds": 5, "n_jobs": 1, "learning_rate": 0.2}


@pytest.fixture(scope="module")
def data(sample_dir: Path) -> FactoryDataModule:
    dm = FactoryDataModule(data_dir=str(sample_dir), horizon=5)
    dm.setup("fit")
    return dm


def _fit(model, dm: FactoryDataModule):
    import lightning as L

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    return model


def _direct_xgboost(dm: FactoryDataModule):
    """XGBoost fitted on the gathered arrays, as the model did before row batches."""
    import xgboost

    (X, y, w), (Xv, yv, wv) = dm.arrays("train"), dm.arrays("val")
    clf = xgboost.XGBClassifier(max_depth=6, subsample=0.8, colsample_bytree=0.8, min_child_weight=1.0,
                                n_estimators=40, learning_rate=0.2, reg_lambda=1.0, early_stopping_rounds=5,
                                n_jobs=1, random_state=0, objective="multi:softprob", eval_metric="mlogloss",
                                tree_method="hist")
    clf.fit(X, y, sample_weight=w, eval_set=[(X, y), (Xv, yv)], sample_weight_eval_set=[w, wv], verbose=False)
    return clf


@pytest.mark.parametrize("subset", [False, True], ids=["whole-split", "row-subset"])
def test_xgboost_row_batches_match_the_library_on_gathered_arrays(data, subset, monkeypatch):
    # small batches, so the subset's matrix is built from many pieces
    monkeypatch.setattr(split_module, "BATCH_ROWS", 257)
    n_train, n_val = len(data.container.split("train")), len(data.container.split("val"))
    dm = data.restricted(train=np.arange(1, n_train, 2), val=np.arange(0, n_val, 3)) if subset else data
    model = _fit(create_model("xgboost", **PARAMS), dm)
    reference = _direct_xgboost(dm)
    X_test = data.container.split("test").features
    # measured: equal (max difference 0.0 for two subsets); the tolerance allows the sketch's float order
    np.testing.assert_allclose(model.predict_proba_array(X_test), reference.predict_proba(X_test), rtol=0, atol=1e-6)
    assert model.fit_summary_["best_iteration"] == reference.best_iteration
    assert model.history_["val"]["mlogloss"] == pytest.approx(reference.evals_result()["validation_1"]["mlogloss"])


def _traced_peak(fit) -> int:
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_xgboost_row_subset_is_never_gathered_whole(data, monkeypatch):
    monkeypatch.setattr(split_module, "BATCH_ROWS", 128)
    n_train = len(data.container.split("train"))
    dm = data.restricted(train=np.arange(0, n_train, 2), learn_statistics=False)
    subset_bytes = (n_train // 2) * data.container.split("train").features.shape[1] * 4
    model = create_model("xgboost", **PARAMS)

    def batched() -> None:
        model.fit_estimator(model.build_estimator(), model.split_input(dm, "train"), model.split_input(dm, "val"))

    def gathered() -> None:  # the control: the subset gathered as X[rows], as before
        train = SplitRows(*dm.arrays("train"))
        model.fit_estimator(model.build_estimator(), train, model.split_input(dm, "val"))

    # numpy's allocations are traced: gathering the subset costs subset_bytes, batches of 128 rows a fraction
    assert _traced_peak(gathered) >= subset_bytes
    assert _traced_peak(batched) < subset_bytes / 2


def test_train_metrics_predicted_in_batches_equal_one_call(data):
    model = _fit(create_model("xgboost", **PARAMS), data)
    rows = data.split_rows("train")
    np.testing.assert_array_equal(model.batched_proba(rows, batch_rows=333),
                                  model.estimator_proba(data.container.split("train").features))


@pytest.mark.parametrize("name", ["lightgbm", "xgboost", "catboost"])
def test_a_block_of_rows_reaches_the_library_as_a_view(data, name):
    # a walk-forward fold trains on one block of rows: the library reads the container's array, no copy
    X = data.container.split("train").features
    dm = data.restricted(train=np.arange(100, len(X) - 50), learn_statistics=False)
    model = create_model(name, **PARAMS)
    train = model.split_input(dm, "train")
    X_fit = train.X if hasattr(train, "X") else train[0]
    assert len(X_fit) == len(X) - 150 and np.shares_memory(X_fit, X)
    np.testing.assert_array_equal(X_fit, dm.arrays("train")[0])


def test_lightgbm_on_a_block_of_rows_equals_the_gathered_fit(data):
    n = len(data.container.split("train"))
    dm = data.restricted(train=np.arange(0, n - 200))
    model = _fit(create_model("lightgbm", **PARAMS), dm)
    direct = create_model("lightgbm", **PARAMS)
    estimator = direct.build_estimator()
    direct.history_ = direct.fit_estimator(estimator, dm.arrays("train"), dm.arrays("val"))
    direct.estimator_ = estimator
    X_test = data.container.split("test").features
    np.testing.assert_array_equal(model.predict_proba_array(X_test), direct.predict_proba_array(X_test))
