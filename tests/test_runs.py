"""mlfactory.load_run and mlfactory.list_runs: real runs read back as a notebook would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory import MLFactoryError, list_runs, load_run
from mlfactory.cli import main
from mlfactory.data.contract import split_file
from mlfactory.errors import RunError

HORIZON = 5


def trainer_for(save_dir: Path, name: str, version: str | None = None, **kwargs):
    """A quiet Trainer whose run record goes to ``save_dir/name/version``."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from mlfactory import RunRecord

    L.seed_everything(0, verbose=False)
    return L.Trainer(max_epochs=1, logger=TensorBoardLogger(save_dir=str(save_dir), name=name, version=version),
                     callbacks=[RunRecord(), ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)],
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


@pytest.fixture(scope="module")
def root(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """xgboost and lstm fits and a two-split logistic cross-validation, under one lightning_logs/."""
    from mlfactory import FactoryDataModule, create_model
    from mlfactory.validation.runner import CVSettings, run_cv

    logs = tmp_path_factory.mktemp("runs") / "lightning_logs"
    for name, params in (("xgboost", {"n_estimators": 15, "n_jobs": 1}), ("lstm", {"hidden_size": 8})):
        trainer = trainer_for(logs, name, limit_train_batches=3)
        trainer.fit(create_model(name, **params), FactoryDataModule(data_dir=str(sample_dir), horizon=HORIZON, seq_len=10))
    run_cv(lambda: create_model("logistic"), FactoryDataModule(data_dir=str(sample_dir), horizon=HORIZON),
           lambda split: trainer_for(split.parent.parent, split.parent.name, split.name),
           logs / "cv" / "logistic" / "run1", CVSettings("walk_forward", n_splits=2))
    return logs


def fit_dir(root: Path, model: str) -> Path:
    (run,) = [p.parent for p in (root / model).rglob("status.json")]
    return run


def test_a_fit_reads_back_with_its_record(root, sample_dir):
    path = fit_dir(root, "xgboost")
    run = load_run(path)
    assert (run.kind, run.state, run.model, run.horizon) == ("fit", "complete", "xgboost", HORIZON)
    assert run.metrics == json.loads((path / "metrics" / "evaluation_metrics.json").read_text())
    assert run.config["model"]["init_args"]["n_estimators"] == 15 and run.config["training"]["data"]["seq_len"] == 10
    test = run.predictions("test")
    assert list(test.columns) == ["datetime", "symbol", "label", "p_down", "p_neutral", "p_up", "predicted_class",
                                  "confidence", "row", "fwd_return"]
    assert len(test) == run.metrics["test"]["n_samples"]
    np.testing.assert_allclose(test[["p_down", "p_neutral", "p_up"]].sum(axis=1), 1, atol=1e-5)
    # fwd_return is the split file's, row for row (joined on datetime and symbol)
    frame = pd.read_parquet(sample_dir / split_file("test"))
    expected = frame.set_index([pd.to_datetime(frame["datetime"], utc=True), frame["symbol"]])[f"fwd_return_h{HORIZON}"]
    np.testing.assert_allclose(test["fwd_return"], expected.loc[list(zip(test["datetime"], test["symbol"]))], rtol=1e-6)
    # balanced accuracy from the table is the recorded one
    from mlfactory.evaluation.classification import classification_report

    probs = test[["p_down", "p_neutral", "p_up"]].to_numpy()
    recomputed = classification_report(probs, test["label"].to_numpy())["balanced_accuracy"]
    assert recomputed == pytest.approx(run.metrics["test"]["balanced_accuracy"])
    # boosting: the learning curve is per round
    assert run.history.columns[0] == "round" and len(run.history) == 15 and len(run.history.columns) == 3
    assert run.bundle.module.registry_name == "xgboost"
    assert run.bundle is run.bundle  # loaded once


def test_a_neural_fits_history_is_per_epoch(root):
    run = load_run(fit_dir(root, "lstm"))
    assert list(run.history["epoch"]) == [0] and "val_loss" in run.history
    assert run.rounds.empty and len(run.predictions("val")) == run.metrics["val"]["n_samples"]


def test_a_cross_validation_reads_back(root):
    run = load_run(root / "cv" / "logistic" / "run1")
    assert (run.kind, run.model, run.horizon) == ("cv", "logistic", HORIZON)
    assert run.config["cv"]["scheme"] == "walk_forward" and run.metrics["n_splits"] == 2
    stitched = run.predictions()
    assert {"path", "split", "datetime", "symbol", "label", "fwd_return", "p_up"} <= set(stitched.columns)
    assert len(run.splits) == 2 and all(s.kind == "fit" for s in run.splits)
    first = run.predictions(0)  # split 0's own test rows, with the forward returns of the stitched table
    assert len(first) == (stitched["split"] == 0).sum() and first["fwd_return"].notna().all()
    assert set(run.folds["role"].astype(str)) >= {"train", "val", "test"}
    with pytest.raises(RunError, match="cross-validation: it has no single bundle; use one per split"):
        run.bundle


def test_list_runs_is_what_compare_prints(root, tmp_path, monkeypatch, capsys):
    table = list_runs(root)
    assert len(table) == 3 and sorted(table["stage"]) == ["cv walk_forward", "fit", "fit"]
    assert {"noise", "test_balanced_accuracy_lo", "n_splits", "run_dir"} <= set(table.columns)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(root)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == list(table.columns)
    assert [line.split()[-1] for line in printed[1:1 + len(table)]] == list(table["run_dir"])
    assert list(list_runs(root, top=1)["run_dir"]) == list(table["run_dir"][:1])
    for run_dir in table["run_dir"]:
        assert load_run(run_dir).state == "complete"


def test_what_is_not_a_run_is_one_line(root, tmp_path):
    for path, message in ((tmp_path / "none", "does not exist"),
                          (root, r"is not a run: it has no status.json; it holds runs .*list_runs"),
                          (tmp_path, "is not a run: it has no status.json; a run directory holds status.json")):
        with pytest.raises(MLFactoryError, match=message) as info:
            load_run(path)
        assert "\n" not in str(info.value)


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "bundle", "events.*"))
    return target


def test_a_damaged_record_is_one_line(root, tmp_path):
    run = copy_run(fit_dir(root, "xgboost"), tmp_path / "xgboost" / "damaged")
    path = run / "metrics" / "evaluation_metrics.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(RunError, match="the run record is damaged: metrics/evaluation_metrics.json is unreadable"):
        load_run(run)
    path.unlink()
    with pytest.raises(RunError, match="metrics/evaluation_metrics.json is missing"):
        load_run(run)


def test_a_failed_run_loads_and_says_why_it_has_no_results(root, tmp_path):
    run = copy_run(fit_dir(root, "xgboost"), tmp_path / "xgboost" / "failed")
    for name in ("val", "test"):
        (run / "predictions" / f"{name}_predictions.npz").unlink()
    (run / "metrics" / "evaluation_metrics.json").unlink()
    (run / "status.json").write_text(json.dumps({"status": "failed", "stage": "fit", "error": "DataError: bad"}))
    failed = load_run(run)
    assert failed.state == "failed"
    with pytest.raises(RunError, match="has no test predictions .*it saved no predictions: the run failed "
                                       r"\(DataError: bad\)"):
        failed.predictions("test")
    with pytest.raises(RunError, match=r"has no metrics/evaluation_metrics.json: the run failed \(DataError: bad\)"):
        failed.metrics


def test_a_cross_validation_names_the_predictions_it_has(root):
    with pytest.raises(RunError, match=r"its predictions are 'test' \(every path\) or a split number k .*not 'val'"):
        load_run(root / "cv" / "logistic" / "run1").predictions("val")
    two = list_runs([fit_dir(root, "xgboost"), fit_dir(root, "lstm")])
    assert sorted(two["model"]) == ["lstm", "xgboost"]


def test_the_sharpe_ranking_has_intervals_around_the_recorded_ratios(root):
    table = list_runs(root, sort="test_sharpe")
    fits = table[table["stage"] == "fit"]
    assert len(fits) == 2 and {"test_sharpe_lo", "test_sharpe_hi", "noise"} <= set(table.columns)
    for row in fits.itertuples():
        recorded = load_run(row.run_dir).metrics["test"]["trading"]["sharpe_annualised"]
        assert row.test_sharpe == pytest.approx(recorded) and row.test_sharpe_lo < recorded < row.test_sharpe_hi
    assert set(fits["noise"]) <= {"leader", "within noise", ""} and "leader" in set(fits["noise"])
