"""Ensembles: member specs, combination rules, purged folds, mixed families aligned by row, reloads."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.data.container import TimeSeriesDataContainer
from mlfactory.errors import EnsembleCompatibilityError
from mlfactory.models.ensemble.members import predict_rows
from mlfactory.models.ensemble.stacking import purged_folds

SMALL_XGB = {"name": "xgboost", "n_estimators": 15, "max_depth": 3, "n_jobs": 1}
SMALL_LSTM = {"name": "lstm", "hidden_size": 8, "num_layers": 1}


@pytest.mark.parametrize(
    "members, message",
    [
        ([], "at least one member"),
        (["xgbost"], "member 0: unknown model 'xgbost'"),
        ([{"name": "xgboost", "max_dept": 3}], "member 0 (xgboost) is misconfigured"),
        ([{"max_depth": 3}], "give a registry name or a mapping with a 'name' key"),
        (["voting"], "is itself an ensemble"),
        ([{"name": "xgboost", "learning_rate": 5.0}], "learning_rate=5.0 is outside"),
        (["multires"], "member 0 (multires) reads 'multires' input, not rows or windows"),
    ],
)
def test_bad_member_lists_are_refused_at_construction(members, message):
    with pytest.raises(EnsembleCompatibilityError, match=re.escape(message)):
        create_model("voting", members=members)


def test_weights_must_match_the_members():
    with pytest.raises(EnsembleCompatibilityError, match="one per member"):
        create_model("voting", members=["xgboost", "xgboost"], weights=[1.0])


def test_soft_and_hard_voting_rules():
    a = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=np.float32)
    b = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]], dtype=np.float32)
    soft = create_model("voting", members=["xgboost", "xgboost"], weights=[3.0, 1.0])
    np.testing.assert_allclose(soft.combine([a, b]), 0.75 * a + 0.25 * b, rtol=1e-6)
    hard = create_model("voting", members=["xgboost", "xgboost"], weights=[3.0, 1.0], voting="hard")
    np.testing.assert_allclose(hard.combine([a, b]), [[0.75, 0.0, 0.25], [0.0, 0.25, 0.75]])


def test_input_kind_follows_the_members():
    assert create_model("voting", members=["xgboost"]).input_kind == "tabular"
    assert create_model("voting", members=["xgboost", "lstm"]).input_kind == "sequence"


def test_purged_folds_keep_labels_and_embargo_out_of_the_held_out_block(sample_dir):
    train = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5).split("train")
    rows = np.arange(len(train))
    purge, embargo = 5, 7
    folds = purged_folds(train, rows, n_folds=3, purge=purge, embargo=embargo)
    held_out_all = np.concatenate([held for _, held in folds])
    np.testing.assert_array_equal(np.sort(held_out_all), rows)  # every row predicted exactly once
    for fit_rows, held in folds:
        assert not np.intersect1d(fit_rows, held).size
        for start in np.unique(train.segment_start[held]):
            block = held[train.segment_start[held] == start]
            same = fit_rows[train.segment_start[fit_rows] == start]
            assert not ((same >= block.min() - purge) & (same < block.min())).any()
            assert not ((same > block.max()) & (same <= block.max() + embargo)).any()
            # the block is one contiguous stretch of this symbol's bars
            assert block.max() - block.min() + 1 == len(block)
    # blocks are chronological
    starts = [train.timestamps[held].min() for _, held in folds]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def mixed_voting(fit_recorded):
    return fit_recorded("voting", {"members": [SMALL_XGB, SMALL_LSTM], "neural_max_epochs": 2}, max_epochs=2, seq_len=10)


def test_mixed_ensemble_lines_members_up_by_row(mixed_voting):
    model, datamodule, _ = mixed_voting
    test = datamodule.container.split("test")
    rows = test.window_end_rows(10)[:50]
    xgb, lstm = model.members_
    expected = 0.5 * predict_rows(xgb, test, rows, 10, 64) + 0.5 * predict_rows(lstm, test, rows, 10, 64)
    # the tabular member read exactly the row each window ends at
    np.testing.assert_allclose(predict_rows(xgb, test, rows, 10, 64), xgb.estimator_proba(test.features[rows]))
    batch = datamodule.container.get_pytorch_sequences("test", 10).__getitems__(list(range(50)))
    np.testing.assert_array_equal(batch["row"].numpy(), rows)
    np.testing.assert_allclose(model.predict_proba(batch).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_mixed_ensemble_covers_the_rows_every_member_covers(mixed_voting):
    import json
    from pathlib import Path

    model, datamodule, trainer = mixed_voting
    with np.load(Path(trainer.log_dir) / "predictions" / "test_predictions.npz") as predictions:
        np.testing.assert_array_equal(predictions["row"], datamodule.container.split("test").window_end_rows(10))
    scores = json.loads((Path(trainer.log_dir) / "metrics" / "evaluation_metrics.json").read_text())
    assert scores["test"]["n_samples"] == len(datamodule.container.split("test").window_end_rows(10))


def test_ensemble_checkpoint_holds_its_members(mixed_voting):
    from mlfactory.models.ensemble.voting import VotingEnsemble

    model, datamodule, trainer = mixed_voting
    restored = VotingEnsemble.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert [m.registry_name for m in restored.members_] == ["xgboost", "lstm"]
    batch = next(iter(datamodule.test_dataloader()))
    torch.testing.assert_close(restored.predict_proba(batch), model.predict_proba(batch), rtol=0, atol=0)


@pytest.mark.parametrize("name, extra", [("stacking", {"n_folds": 2}), ("blending", {})])
def test_meta_learner_ensembles_fit_and_reload(name, extra, sample_dir, make_trainer):
    model = create_model(name, members=[SMALL_XGB, {**SMALL_XGB, "max_depth": 2}], **extra)
    datamodule = FactoryDataModule(data_dir=str(sample_dir))
    trainer = make_trainer(name=name)
    trainer.fit(model, datamodule=datamodule)
    assert model.coef_.shape == (3, 6) and model.input_kind == "tabular"
    restored = type(model).load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    batch = next(iter(datamodule.test_dataloader()))
    torch.testing.assert_close(restored.predict_proba(batch), model.predict_proba(batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["voting", "stacking", "blending"])
def test_ensembles_default_to_the_three_boosting_libraries(name, capsys):
    from mlfactory.cli import main
    from mlfactory.models.ensemble.base import DEFAULT_MEMBERS

    model = create_model(name)
    assert [m["name"] for m in model.hparams.members] == ["xgboost", "lightgbm", "catboost"]
    assert model.hparams.members == DEFAULT_MEMBERS and model.hparams.members is not DEFAULT_MEMBERS
    model.hparams.members[0]["n_estimators"] = 1  # one ensemble's copy: the default stays as it was
    assert DEFAULT_MEMBERS[0]["n_estimators"] == 200
    with pytest.raises(SystemExit):  # the bare command parses: no required --model.members
        main(["fit", "--model", name, "--print_config"])
    assert "name: catboost" in capsys.readouterr().out

