"""catboost through the estimator wrapper: same predictions as CatBoost itself, native cbm files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import catboost
import numpy as np
import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.models.boosting.catboost import CatBoostModel

PARAMS = {"n_estimators": 40, "max_depth": 4, "learning_rate": 0.1, "early_stopping_rounds": 10, "n_jobs": 1}


@pytest.fixture(scope="module")
def fitted(fit_recorded):
    return fit_recorded("catboost", PARAMS)


def _direct(datamodule, train=None):
    """CatBoostClassifier used directly, configured and fitted as the wrapper does."""
    (X, y, w), (Xv, yv, wv) = train or datamodule.arrays("train"), datamodule.arrays("val")
    direct = catboost.CatBoostClassifier(
        iterations=PARAMS["n_estimators"], depth=PARAMS["max_depth"], learning_rate=PARAMS["learning_rate"],
        l2_leaf_reg=3.0, early_stopping_rounds=PARAMS["early_stopping_rounds"], thread_count=PARAMS["n_jobs"],
        random_seed=0, loss_function="MultiClass", class_names=[0, 1, 2], use_best_model=True,
        allow_writing_files=False, verbose=False,
    )
    return direct.fit(catboost.Pool(X, y, weight=w), eval_set=catboost.Pool(Xv, yv, weight=wv))


def test_predictions_equal_catboost_used_directly(fitted):
    model, datamodule, _ = fitted
    direct = _direct(datamodule)
    X_test = datamodule.arrays("test")[0]
    probs = model.estimator_proba(X_test)
    assert probs.shape == (len(X_test), 3)
    np.testing.assert_array_equal(probs, direct.predict_proba(X_test))
    assert model.estimator_.best_iteration_ == direct.best_iteration_
    assert model.estimator_.tree_count_ == direct.best_iteration_ + 1  # cut to the best round


def test_fits_once_and_takes_one_optimizer_step(fitted):
    _, _, trainer = fitted
    assert trainer.global_step == 1 and trainer.current_epoch == 1


def test_checkpoint_round_trip_gives_identical_predictions(fitted):
    model, datamodule, trainer = fitted
    restored = CatBoostModel.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(restored.estimator_proba(X_test), model.estimator_proba(X_test))
    stored = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["estimator"]
    assert stored["library"] == "catboost" and stored["format"] == "cbm" and isinstance(stored["data"], bytes)
    assert stored["version"] == catboost.__version__


def test_best_model_is_a_cbm_file_loadable_by_catboost(fitted):
    model, datamodule, trainer = fitted
    native = catboost.CatBoostClassifier()
    native.load_model(str(trainer.checkpoint_callback.dirpath) + "/best_model/model.cbm", format="cbm")
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(native.predict_proba(X_test), model.estimator_proba(X_test))


def test_rounds_are_logged_as_steps(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, _, trainer = fitted
    events = EventAccumulator(trainer.log_dir)
    events.Reload()
    val_curve = events.Scalars("rounds/val_MultiClass")
    assert [e.step for e in val_curve] == list(range(len(model.history_["val"]["MultiClass"])))
    assert "rounds/train_MultiClass" in events.Tags()["scalars"]


def test_sample_weights_reach_the_fit(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    no_down = (X, y, np.where(y == 0, 0.0, w).astype(np.float32))  # class 0 (down) weighs nothing
    estimator = model.build_estimator()
    model.fit_estimator(estimator, no_down, datamodule.arrays("val"))
    X_test = datamodule.arrays("test")[0]
    probs = estimator.predict_proba(X_test)
    np.testing.assert_array_equal(probs, _direct(datamodule, train=no_down).predict_proba(X_test))
    assert not (probs.argmax(axis=1) == 0).any()
    assert (model.estimator_proba(X_test).argmax(axis=1) == 0).any()  # the weighted fit predicts it
    assert list(tmp_path.iterdir()) == []  # allow_writing_files=False: no catboost_info/


def test_a_model_that_saw_two_classes_fills_three_columns(fitted):
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    keep = y != 1
    two_class = CatBoostModel(**PARAMS)
    two_class.estimator_ = two_class.build_estimator()
    # the validation split still has class 1
    two_class.fit_estimator(two_class.estimator_, (X[keep], y[keep], w[keep]), datamodule.arrays("val"))
    before = set(Path(tempfile.gettempdir()).glob("mlfactory-catboost-*"))
    two_class.estimator_ = two_class.from_native(two_class.to_native())
    assert set(Path(tempfile.gettempdir()).glob("mlfactory-catboost-*")) == before  # the cbm file is gone
    probs = two_class.estimator_proba(datamodule.arrays("test")[0])
    assert probs.shape[1] == 3 and (probs[:, 1] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_parameter_out_of_range_names_parameter_and_range(sample_dir, make_trainer):
    model = create_model("catboost", max_depth=17)
    with pytest.raises(ModelError, match=r"max_depth=17 is outside \[1, 16\]"):
        make_trainer().fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir)))
