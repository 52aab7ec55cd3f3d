"""xgboost through the estimator wrapper: same predictions as xgboost itself, native checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xgboost

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.models.boosting.xgboost import XGBoostModel

PARAMS = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1, "early_stopping_rounds": 10, "n_jobs": 1}


@pytest.fixture(scope="module")
def fitted(fit_recorded):
    return fit_recorded("xgboost", PARAMS)


def test_predictions_equal_xgboost_used_directly(fitted):
    model, datamodule, _ = fitted
    (X, y, w), (Xv, yv, wv) = datamodule.arrays("train"), datamodule.arrays("val")
    direct = xgboost.XGBClassifier(
        **PARAMS, objective="multi:softprob", eval_metric="mlogloss", tree_method="hist", random_state=0,
        subsample=0.8, colsample_bytree=0.8,
    )
    direct.fit(X, y, sample_weight=w, eval_set=[(X, y), (Xv, yv)], sample_weight_eval_set=[w, wv], verbose=False)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(model.estimator_proba(X_test), direct.predict_proba(X_test))
    assert model.estimator_.best_iteration == direct.best_iteration


def test_fits_once_and_takes_one_optimizer_step(fitted):
    _, _, trainer = fitted
    assert trainer.global_step == 1
    assert trainer.current_epoch == 1  # should_stop after the fit, despite max_epochs=3


def test_checkpoint_round_trip_gives_identical_predictions(fitted):
    model, datamodule, trainer = fitted
    restored = XGBoostModel.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(restored.estimator_proba(X_test), model.estimator_proba(X_test))
    stored = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["estimator"]
    assert stored["library"] == "xgboost" and stored["format"] == "ubj" and isinstance(stored["data"], bytes)


def test_best_model_is_native_ubjson_loadable_by_xgboost(fitted):
    model, datamodule, trainer = fitted
    native = xgboost.Booster()
    native.load_model(str(trainer.checkpoint_callback.dirpath) + "/best_model/model.ubj")
    X_test = datamodule.arrays("test")[0]
    best = model.estimator_.best_iteration
    probs = native.inplace_predict(X_test, iteration_range=(0, best + 1))
    np.testing.assert_allclose(probs, model.estimator_proba(X_test), rtol=1e-6)


def test_rounds_are_logged_as_steps(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, _, trainer = fitted
    events = EventAccumulator(trainer.log_dir)
    events.Reload()
    val_curve = events.Scalars("rounds/val_mlogloss")
    assert [e.step for e in val_curve] == list(range(len(model.history_["val"]["mlogloss"])))
    assert "rounds/train_mlogloss" in events.Tags()["scalars"]
    assert "val_balanced_accuracy" in events.Tags()["scalars"]
    assert {"confusion_val", "confusion_test", "reliability_test"} <= set(events.Tags()["images"])


def test_beats_chance_on_the_planted_signal(fitted):
    import json
    from pathlib import Path

    scores = json.loads((Path(fitted[2].log_dir) / "metrics" / "evaluation_metrics.json").read_text())
    assert scores["test"]["balanced_accuracy"] > 0.36


def test_parameter_out_of_range_names_parameter_and_range(sample_dir, make_trainer):
    model = create_model("xgboost", learning_rate=1.5)
    with pytest.raises(ModelError, match=r"learning_rate=1.5 is outside \[1e-06, 1.0\]"):
        make_trainer().fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir)))
