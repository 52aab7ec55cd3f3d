"""One conformance suite over every registered model: fit, predict, reload, learn, and the leak canary.

The leak canary: on the generator's no-signal variant no model may beat chance on the test split,
neither in balanced accuracy nor in telling up from down (direction AUC); on the planted-signal
variant every model must beat chance. The chance bands are derived from the test size.
Every registered model needs an entry in CONTRACT_PARAMS (small, fast settings), so a new model
cannot skip the suite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from mlfactory import FactoryDataModule, create_model, list_models

SEQ_LEN = 16
HORIZON = 5
SMALL_NEURAL = {"learning_rate": 3e-3}
CONTRACT_PARAMS: dict[str, dict] = {
    "xgboost": {"n_estimators": 60, "max_depth": 3, "n_jobs": 2},
    "lightgbm": {"n_estimators": 60, "num_leaves": 15, "n_jobs": 2},
    "catboost": {"n_estimators": 60, "max_depth": 4, "n_jobs": 2},
    "random_forest": {"n_estimators": 60, "n_jobs": 2},
    "logistic": {},
    "svm": {"n_components": 100},
    "lstm": {"hidden_size": 16, "num_layers": 1, **SMALL_NEURAL},
    "gru": {"hidden_size": 16, "num_layers": 1, **SMALL_NEURAL},
    "tcn": {"channels": 16, "receptive_field": SEQ_LEN, **SMALL_NEURAL},
    "transformer": {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32, **SMALL_NEURAL},
    "inceptiontime": {"n_filters": 8, "bottleneck_size": 8, "kernel_size": 8, "depth": 3, **SMALL_NEURAL},
    "resnet1d": {"n_filters": 16, **SMALL_NEURAL},
    "patchtst": {"patch_len": 8, "stride": 4, "d_model": 16, "n_heads": 2, "num_layers": 1, "d_ff": 32, **SMALL_NEURAL},
    "itransformer": {"d_model": 16, "n_heads": 2, "num_layers": 1, "d_ff": 32, **SMALL_NEURAL},
    "tft": {"hidden_size": 8, "n_heads": 1, **SMALL_NEURAL},
    "multires": {"encoder": "gru", "hidden_size": 16, **SMALL_NEURAL},
    "n_beats": {"num_stacks": 1, "num_blocks": 2, "num_layers": 2, "layer_width": 64, **SMALL_NEURAL},
    "voting": {"members": [{"name": "xgboost", "n_estimators": 40, "max_depth": 3, "n_jobs": 2},
                           {"name": "lstm", "hidden_size": 8, "num_layers": 1}], "neural_max_epochs": 2},
    "stacking": {"members": [{"name": "xgboost", "n_estimators": 40, "max_depth": 3, "n_jobs": 2}, "logistic"],
                 "n_folds": 2},
    "blending": {"members": [{"name": "xgboost", "n_estimators": 40, "max_depth": 3, "n_jobs": 2}, "logistic"]},
}
NAMES = sorted(spec.name for spec in list_models())


def chance_band(n_test: int, horizon: int) -> float:
    """Four standard errors of balanced accuracy at chance, inflated by sqrt(horizon) for label overlap.

    At chance each class's recall has variance (1/3)(2/3) / (n/3); their mean has standard error
    sqrt(2 / n) / 3. Labels spanning ``horizon`` bars overlap, which shrinks the effective sample.
    """
    return 4 * math.sqrt(2 / n_test) / 3 * math.sqrt(horizon)


def direction_band(test: dict, horizon: int) -> float:
    """Four standard errors of the direction AUC at chance (Hanley-McNeil under H0), times sqrt(horizon)."""
    n_up, n_down = test["per_class"]["up"]["support"], test["per_class"]["down"]["support"]
    return 4 * math.sqrt((n_up + n_down + 1) / (12 * n_up * n_down)) * math.sqrt(horizon)


PASS_FRACTION = 0.5
"""The planted signal must lift test balanced accuracy above chance by this share of the chance band."""


def fit_once(name: str, data_dir: Path, root: Path, make_trainer, seed: int = 0) -> tuple:
    """Fit ``name`` with its contract settings; ``seed`` moves weights, shuffling and the estimators' own draws."""
    L.seed_everything(seed, verbose=False)
    params = dict(CONTRACT_PARAMS[name])
    model = create_model(name, **params)
    if "random_state" in model.hparams and "random_state" not in params:  # the estimators' own draws
        model = create_model(name, **params, random_state=seed)
    datamodule = FactoryDataModule(data_dir=str(data_dir), horizon=HORIZON, seq_len=SEQ_LEN, batch_size=128)
    trainer = make_trainer(max_epochs=3, name=name)
    trainer.fit(model, datamodule=datamodule)
    return model, datamodule, trainer


@pytest.fixture(scope="module")
def threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks run faster on one thread than two contended ones
    yield
    torch.set_num_threads(previous)


def test_every_model_has_contract_parameters():
    assert set(NAMES) <= set(CONTRACT_PARAMS), f"add small settings for {set(NAMES) - set(CONTRACT_PARAMS)}"


@pytest.mark.parametrize("name", NAMES)
def test_contract(name, contract_dirs, make_trainer, tmp_path, threads):
    model, datamodule, trainer = fit_once(name, contract_dirs[True], tmp_path, make_trainer)
    run = Path(trainer.log_dir)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"

    # predictions: probabilities over three classes, one per sample the model's view has
    # (eval mode first: a forward pass in train mode would move BatchNorm's running statistics)
    model.eval()
    batch = next(iter(datamodule.test_dataloader()))
    probs = model.predict_proba(batch)
    assert probs.shape == (len(batch["y"]), 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(probs)))

    # checkpoint round trip: identical predictions
    restored = type(model).load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    restored.eval()
    torch.testing.assert_close(restored.predict_proba(batch), model.predict_proba(batch), rtol=0, atol=0)
    assert (run / "checkpoints" / "best_model").is_dir() and any((run / "checkpoints" / "best_model").iterdir())

    # learns the planted relation
    test = json.loads((run / "metrics" / "evaluation_metrics.json").read_text())["test"]
    band = chance_band(test["n_samples"], HORIZON)
    assert test["balanced_accuracy"] > 1 / 3 + PASS_FRACTION * band, f"{name} did not beat chance: {test['balanced_accuracy']}"


@pytest.mark.parametrize("name", NAMES)
def test_leak_canary_no_signal_stays_at_chance(name, contract_dirs, make_trainer, tmp_path, threads):
    _, _, trainer = fit_once(name, contract_dirs[False], tmp_path, make_trainer)
    test = json.loads((Path(trainer.log_dir) / "metrics" / "evaluation_metrics.json").read_text())["test"]
    band = chance_band(test["n_samples"], HORIZON)
    assert abs(test["balanced_accuracy"] - 1 / 3) < band, (
        f"{name} scores {test['balanced_accuracy']:.3f} on data with no signal (chance 0.333 ± {band:.3f}): a leak?"
    )
    auc_band = direction_band(test, HORIZON)
    assert abs(test["direction_auc"] - 0.5) < auc_band, (
        f"{name} tells up from down with AUC {test['direction_auc']:.3f} on data with no signal "
        f"(chance 0.5 ± {auc_band:.3f}): a leak?"
    )
