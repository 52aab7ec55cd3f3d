"""random_forest, logistic and svm through the estimator wrapper: weighted fits, skops checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import ModelError
from mlfactory.registry import model_class

# small and single-threaded: the sample splits have ~4,800 training rows
PARAMS = {
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 20, "n_jobs": 1},
    "logistic": {"C": 0.5},
    "svm": {"n_components": 60, "n_jobs": 1},
}


@pytest.fixture(scope="module", params=list(PARAMS))
def fitted(request, fit_recorded):
    return fit_recorded(request.param, PARAMS[request.param], max_epochs=2)


def test_probabilities_have_three_columns_that_sum_to_one(fitted):
    model, datamodule, trainer = fitted
    probs = model.estimator_proba(datamodule.arrays("test")[0])
    assert probs.shape == (len(datamodule.arrays("test")[0]), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert trainer.global_step == 1 and trainer.current_epoch == 1
    assert model.history_ == {}


def test_checkpoint_round_trip_gives_identical_predictions(fitted):
    model, datamodule, trainer = fitted
    restored = type(model).load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(restored.estimator_proba(X_test), model.estimator_proba(X_test))
    stored = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["estimator"]
    assert stored["library"] == "sklearn" and stored["format"] == "skops" and isinstance(stored["data"], bytes)


def test_best_model_is_a_skops_file_of_expected_types(fitted):
    model, datamodule, trainer = fitted
    path = f"{trainer.checkpoint_callback.dirpath}/best_model/model.skops"
    untrusted = skops.io.get_untrusted_types(file=path)
    assert sorted(untrusted) == sorted(model.trusted_types)  # exactly the types the model lists
    assert all(name.startswith("sklearn.") for name in untrusted)
    native = skops.io.load(path, trusted=untrusted)
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(native.predict_proba(X_test), model.estimator_proba(X_test))


def test_sample_weights_reach_the_classifier(fitted):
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    no_down = (X, y, np.where(y == 0, 0.0, w))  # class 0 (down) weighs nothing
    estimator = model.build_estimator()
    model.fit_estimator(estimator, no_down, datamodule.arrays("val"))
    X_test = datamodule.arrays("test")[0]
    probs = estimator.predict_proba(X_test)
    assert not (probs.argmax(axis=1) == 0).any()
    assert probs[:, 0].mean() < 0.05 < model.estimator_proba(X_test)[:, 0].mean()


def test_refuses_a_skops_file_with_types_it_does_not_trust(fitted):
    import operator

    from sklearn.preprocessing import FunctionTransformer

    model = fitted[0]
    with pytest.raises(ModelError, match=r"does not trust: \['_operator.neg'\]"):
        model.from_native(skops.io.dumps(FunctionTransformer(operator.neg)))


@pytest.mark.parametrize("fitted", ["logistic"], indirect=True)
def test_a_model_that_saw_two_classes_fills_three_columns(fitted):
    _, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    keep = y != 1
    model = create_model("logistic")
    model.estimator_ = model.build_estimator()
    model.fit_estimator(model.estimator_, (X[keep], y[keep], w[keep]), datamodule.arrays("val"))
    probs = model.estimator_proba(datamodule.arrays("test")[0])
    assert probs.shape[1] == 3 and (probs[:, 1] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("fitted", ["random_forest"], indirect=True)
def test_random_forest_predicts_with_one_thread_whatever_it_trained_with(fitted):
    _, datamodule, _ = fitted
    model = create_model("random_forest", n_estimators=4, n_jobs=2)
    estimator = model.build_estimator()
    model.fit_estimator(estimator, datamodule.arrays("train"), datamodule.arrays("val"))
    assert estimator.n_jobs == 1


@pytest.mark.parametrize("fitted", ["svm"], indirect=True)
def test_svm_probabilities_are_calibrated_on_average(fitted):
    model, datamodule, _ = fitted
    X, y, w = datamodule.arrays("train")
    mean_probs = np.average(model.estimator_proba(X), axis=0, weights=w)
    class_shares = np.bincount(y, weights=w, minlength=3) / w.sum()
    np.testing.assert_allclose(mean_probs, class_shares, atol=0.03)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("random_forest", {"min_samples_leaf": 0}, r"min_samples_leaf=0 is outside \[1, inf\]"),
        ("logistic", {"C": 0.0}, r"C=0.0 is outside \[1e-06, inf\]"),
        ("svm", {"calibration_folds": 1}, r"calibration_folds=1 is outside \[2, inf\]"),
    ],
)
def test_parameter_out_of_range_names_parameter_and_range(sample_dir, make_trainer, name, params, message):
    model = model_class(name)(**params)
    with pytest.raises(ModelError, match=message):
        make_trainer().fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir)))
