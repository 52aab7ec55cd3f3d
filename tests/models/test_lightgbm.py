"""lightgbm through the estimator wrapper: same predictions as LightGBM itself, native model text."""

from __future__ import annotations

import warnings

import lightgbm
import numpy as np
import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.models.boosting.lightgbm import LightGBMModel

PARAMS = {"n_estimators": 40, "num_leaves": 7, "learning_rate": 0.1, "early_stopping_rounds": 10, "n_jobs": 1}


@pytest.fixture(scope="module")
def fitted(fit_recorded):
    return fit_recorded("lightgbm", PARAMS)


def _direct(datamodule, train=None, **overrides):
    """LGBMClassifier used directly, configured and fitted as the wrapper does."""
    (X, y, w), (Xv, yv, wv) = train or datamodule.arrays("train"), datamodule.arrays("val")
    params = {k: v for k, v in PARAMS.items() if k != "early_stopping_rounds"} | overrides
    direct = lightgbm.LGBMClassifier(
        **params, max_depth=-1, subsample=0.8, subsample_freq=1, colsample_bytree=0.8, min_child_samples=20,
        reg_lambda=1.0, random_state=0, objective="multiclass", verbose=-1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
        direct.fit(
            X, y, sample_weight=w, eval_set=[(X, y), (Xv, yv)], eval_names=["train", "val"], eval_sample_weight=[w, wv],
            callbacks=[lightgbm.early_stopping(PARAMS["early_stopping_rounds"], verbose=False)],
        )
    return direct


def test_predictions_equal_lightgbm_used_directly(fitted):
    model, datamodule, _ = fitted
    direct = _direct(datamodule)
    X_test = datamodule.arrays("test")[0]
    probs = model.estimator_proba(X_test)
    assert probs.shape == (len(X_test), 3)
    np.testing.assert_array_equal(probs, direct.predict_proba(X_test))
    assert 0 < model.estimator_.best_iteration_ == direct.best_iteration_
    assert model.history_ == direct.evals_result_


def test_fits_once_and_takes_one_optimizer_step(fitted):
    _, _, trainer = fitted
    assert trainer.global_step == 1 and trainer.current_epoch == 1


def test_checkpoint_round_trip_gives_identical_predictions(fitted):
    model, datamodule, trainer = fitted
    restored = LightGBMModel.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert isinstance(restored.estimator_, lightgbm.Booster)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(restored.estimator_proba(X_test), model.estimator_proba(X_test))
    stored = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["estimator"]
    assert stored["library"] == "lightgbm" and stored["format"] == "txt" and isinstance(stored["data"], bytes)
    assert stored["version"] == lightgbm.__version__


def test_best_model_is_model_text_cut_at_the_best_round(fitted):
    model, datamodule, trainer = fitted
    native = lightgbm.Booster(model_file=str(trainer.checkpoint_callback.dirpath) + "/best_model/model.txt")
    assert native.current_iteration() == model.estimator_.best_iteration_
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(native.predict(X_test), model.estimator_proba(X_test))


def test_rounds_are_logged_as_steps(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, _, trainer = fitted
    events = EventAccumulator(trainer.log_dir)
    events.Reload()
    val_curve = events.Scalars("rounds/val_multi_logloss")
    assert [e.step for e in val_curve] == list(range(len(model.history_["val"]["multi_logloss"])))
    assert "rounds/train_multi_logloss" in events.Tags()["scalars"]


def test_sample_weights_reach_the_fit(fitted):
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    no_down = (X, y, np.where(y == 0, 0.0, w).astype(np.float32))  # class 0 (down) weighs nothing
    estimator = model.build_estimator()
    model.fit_estimator(estimator, no_down, datamodule.arrays("val"))
    X_test = datamodule.arrays("test")[0]
    probs = estimator.predict_proba(X_test)
    np.testing.assert_array_equal(probs, _direct(datamodule, train=no_down).predict_proba(X_test))
    assert not (probs.argmax(axis=1) == 0).any()
    assert probs[:, 0].max() < 0.05 < model.estimator_proba(X_test)[:, 0].mean()


def test_refuses_a_training_split_without_every_class(fitted):
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    keep = y != 1
    with pytest.raises(ModelError, match=r"needs all three classes .* but it has \[0, 2\]"):
        model.fit_estimator(model.build_estimator(), (X[keep], y[keep], w[keep]), datamodule.arrays("val"))


def test_parameter_out_of_range_names_parameter_and_range(sample_dir, make_trainer):
    model = create_model("lightgbm", num_leaves=1)
    with pytest.raises(ModelError, match=r"num_leaves=1 is outside \[2, 131072\]"):
        make_trainer().fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir)))
