"""One primitive: FactoryDataModule.restricted fits any registered model on given rows with an ordinary Trainer."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import DataError

SMALL_XGB = {"n_estimators": 15, "max_depth": 3, "n_jobs": 1}
SMALL_LSTM = {"hidden_size": 8, "num_layers": 1}


def plain_trainer(max_epochs: int = 1) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0)


@pytest.fixture()
def datamodule(sample_dir: Path) -> FactoryDataModule:
    data = FactoryDataModule(data_dir=str(sample_dir), horizon=5, seq_len=8, batch_size=128)
    data.setup("fit")
    return data


def test_an_estimator_fits_on_exactly_the_given_rows(datamodule):
    rows = np.arange(0, len(datamodule.container.split("train")), 3)
    model = create_model("xgboost", **SMALL_XGB)
    plain_trainer().fit(model, datamodule=datamodule.restricted(train=rows, learn_statistics=False))

    direct = create_model("xgboost", **SMALL_XGB)
    X, y, w = datamodule.arrays("train")
    estimator = direct.build_estimator()
    direct.fit_estimator(estimator, (X[rows], y[rows], w[rows]), datamodule.arrays("val"))
    X_test = datamodule.arrays("test")[0]
    np.testing.assert_array_equal(model.predict_proba_array(X_test), estimator.predict_proba(X_test).astype(np.float32))


def test_class_weights_are_learned_from_the_rows_the_fit_trains_on(datamodule):
    raw = datamodule.unbalanced_container.split("train")
    rows = np.flatnonzero(raw.labels != 1)[:400]  # a subset whose class shares differ from the split's
    totals = np.bincount(raw.labels[rows], weights=raw.weights[rows], minlength=3)
    present = totals > 0
    expected = np.ones(3)
    expected[present] = totals.sum() / (present.sum() * totals[present])

    restricted = datamodule.restricted(train=rows)
    np.testing.assert_allclose(restricted.container.class_factors, expected, rtol=1e-6)
    X, y, w = restricted.arrays("train")
    np.testing.assert_allclose(w, raw.weights[rows] * expected[raw.labels[rows]], rtol=1e-6)
    assert restricted.container.class_factors != datamodule.container.class_factors
    # kept when asked, and the data module it came from is untouched
    assert datamodule.restricted(train=rows, learn_statistics=False).container is datamodule.container
    assert len(datamodule.arrays("train")[0]) == len(raw)


def test_a_network_fits_on_given_rows_and_predicts_only_the_rows_asked_for(datamodule):
    train = datamodule.container.split("train")
    windows = train.window_end_rows(8)
    predict_rows = datamodule.container.split("test").window_end_rows(8)[5:40:3]
    restricted = datamodule.restricted(train=windows[: len(windows) // 2], predict=predict_rows)
    torch.manual_seed(0)
    model = create_model("lstm", **SMALL_LSTM)
    trainer = plain_trainer()
    trainer.fit(model, datamodule=restricted)
    assert trainer.num_training_batches == int(np.ceil(len(windows) // 2 / 128))
    predictions = trainer.predict(model, datamodule=restricted)
    np.testing.assert_array_equal(torch.cat([p["row"] for p in predictions]).numpy(), predict_rows)


def test_rows_outside_the_view_are_refused(datamodule):
    first_row_of_a_symbol = np.array([0])  # no window of 8 rows ends there
    restricted = datamodule.restricted(train=first_row_of_a_symbol)
    with pytest.raises(DataError, match="fewer than 8 rows of history"):
        plain_trainer().fit(create_model("lstm", **SMALL_LSTM), datamodule=restricted)


def test_ensemble_members_are_fitted_by_an_ordinary_trainer_on_the_ensembles_device(datamodule):
    model = create_model("voting", members=[{"name": "xgboost", **SMALL_XGB}, {"name": "lstm", **SMALL_LSTM}],
                         neural_max_epochs=1)
    trainer = plain_trainer()
    trainer.fit(model, datamodule=datamodule)
    for member in model.members_:
        assert member._trainer is not None and member._trainer is not trainer
        assert member._trainer.strategy.root_device == trainer.strategy.root_device


def test_nothing_outside_models_asks_a_models_family():
    """The model answers; no code outside mlfactory/models/ switches on its family or base class."""
    package = Path(__file__).resolve().parents[2] / "mlfactory"
    asks = re.compile(
        r"(\.family|\[.family.\])\s*(==|!=|in\b|not in\b)|hasattr\([^)]*estimator_"
        r"|isinstance\([^)]*(FactoryModule|EstimatorModule|NeuralModule|EnsembleModule|FitOnceModule)"
        r"|issubclass\([^)]*(EstimatorModule|NeuralModule|EnsembleModule|FitOnceModule)"
    )
    found = [f"{path.relative_to(package)}:{number}: {line.strip()}"
             for path in sorted(package.rglob("*.py")) if "models" not in path.relative_to(package).parts[:1]
             for number, line in enumerate(path.read_text().splitlines(), 1) if asks.search(line)]
    assert found == []
