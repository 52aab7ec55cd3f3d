"""``mlfactory cv`` end to end: the record it writes, a fold equals a plain fit, and the leak canary under CV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.data.contract import SPLITS, split_file
from mlfactory.prepare.scaling import Scaler
from mlfactory.validation import ROLES
from mlfactory.validation.runner import PROB_COLUMNS, CVSettings

HORIZON = 5
XGB = {"n_estimators": 40, "max_depth": 3, "n_jobs": 1}  # cross_validate's xgboost (conftest.py)


def chance_band(n_test: int, horizon: int) -> float:
    """Four standard errors of balanced accuracy at chance, inflated by sqrt(horizon) for label overlap.

    The rule of the contract suite (tests/models/test_contract.py), here over all of a CV's test rows.
    """
    return 4 * math.sqrt(2 / n_test) / 3 * math.sqrt(horizon)


@pytest.fixture(scope="module")
def walk_forward_run(sample_dir: Path, tmp_path_factory, cross_validate) -> tuple[dict, Path]:
    return cross_validate(sample_dir, tmp_path_factory.mktemp("wf"), CVSettings("walk_forward", n_splits=3))


def test_record_of_a_walk_forward(walk_forward_run) -> None:
    summary, run = walk_forward_run
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    folds = pd.read_parquet(run / "folds.parquet")
    assert len(folds) == 3 * summary["n_development_rows"]
    assert set(folds["role"].astype(str)) <= set(ROLES)
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert list(predictions.columns) == ["path", "split", "datetime", "symbol", "label", "fwd_return", *PROB_COLUMNS]
    np.testing.assert_allclose(predictions[PROB_COLUMNS].sum(axis=1), 1, atol=1e-5)
    # every test row of every split is predicted once, on the one path; nothing else is
    tests = folds[folds["role"] == "test"]
    assert len(predictions) == len(tests)
    assert set(zip(predictions["split"], predictions["datetime"], predictions["symbol"])) == set(
        zip(tests["split"], tests["datetime"], tests["symbol"]))
    for split in range(3):
        assert json.loads((run / "splits" / str(split) / "status.json").read_text())["status"] == "complete"
        fitted = folds[(folds["split"] == split) & folds["role"].isin(["train", "val"])]
        assert fitted["datetime"].max() < folds[(folds["split"] == split) & (folds["role"] == "test")]["datetime"].min()
    assert summary["across_splits"]["balanced_accuracy"]["n"] == 3
    assert (run / "folds.png").stat().st_size > 0
    # trading metrics per split are the split's own test metrics (same rows, same calendar)
    for entry in summary["splits"]:
        own = json.loads((run / "splits" / str(entry["split"]) / "metrics" / "evaluation_metrics.json").read_text())
        assert entry["sharpe_annualised"] == pytest.approx(own["test"]["trading"]["sharpe_annualised"], rel=1e-9)
        assert entry["ic_mean"] == pytest.approx(own["test"]["trading"]["ic_mean"], rel=1e-9)
    assert summary["across_paths"]["sharpe_annualised"]["n"] == 1


def test_a_fold_equals_a_plain_fit_on_its_rows(walk_forward_run, sample_dir: Path, tmp_path: Path, make_trainer) -> None:
    """Split 1 of the walk-forward, written as an ordinary split directory and fitted by a plain Trainer."""
    import lightning as L

    from mlfactory import FactoryDataModule, create_model

    _, run = walk_forward_run
    split = 1
    frame = pd.concat([pd.read_parquet(sample_dir / split_file(s)) for s in ("train", "val")], ignore_index=True)
    frame = frame.sort_values(["symbol", "datetime"], kind="stable", ignore_index=True)  # development row order
    folds = pd.read_parquet(run / "folds.parquet")
    roles = folds[folds["split"] == split].reset_index(drop=True)
    assert (roles["datetime"].dt.tz_localize(None).to_numpy() == frame["datetime"].dt.tz_localize(None).to_numpy()).all()
    # what prepare would have written had its train split been this split's training rows: the scaler
    # refitted on those rows, from the unscaled values that scaling_metadata.json recovers
    metadata = json.loads((sample_dir / "scaling_metadata.json").read_text())
    features = list(metadata["features"])
    unscaled = Scaler.from_metadata(metadata, features).inverse_transform(frame[features].to_numpy(np.float32))
    train = (roles["role"] == "train").to_numpy()
    scaler = Scaler.fit(metadata["scaler"], (unscaled[train, j] for j in range(len(features))))
    frame[features] = scaler.transform(unscaled)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "scaling_metadata.json").write_text(json.dumps({**metadata, **scaler.to_metadata(features)}))
    for name, role in zip(SPLITS, ("train", "val", "test")):
        frame[(roles["role"] == role).to_numpy()].to_parquet(plain / split_file(name), index=False)
    L.seed_everything(0, verbose=False)
    trainer = make_trainer(max_epochs=1, name="plain")
    trainer.fit(create_model("xgboost", **XGB), datamodule=FactoryDataModule(data_dir=str(plain), horizon=HORIZON))
    direct = np.load(Path(trainer.log_dir) / "predictions" / "test_predictions.npz")
    cv = pd.read_parquet(run / "predictions.parquet")
    cv = cv[cv["split"] == split].sort_values(["symbol", "datetime"], ignore_index=True)
    assert len(cv) == len(direct["row"]) > 0
    assert (cv["symbol"].to_numpy() == direct["symbol"]).all()
    np.testing.assert_allclose(cv[PROB_COLUMNS].to_numpy(), direct["probabilities"], atol=1e-6)
    # the split's bundle carries the scaler fitted on its own training rows, not prepare's
    bundled = json.loads((run / "splits" / str(split) / "bundle" / "bundle.json").read_text())["input"]["scaler"]
    np.testing.assert_allclose(bundled["center"], scaler.center, rtol=1e-9)
    assert not np.allclose(scaler.center, Scaler.from_metadata(metadata, features).center)


@pytest.mark.parametrize("signal", [False, True])
def test_leak_canary_under_cv(signal: bool, contract_dirs, tmp_path: Path, cross_validate) -> None:
    summary, run = cross_validate(contract_dirs[signal], tmp_path, CVSettings("kfold", n_splits=4))
    n_test = sum(s["n_samples"] for s in summary["splits"])
    band = chance_band(n_test, HORIZON)
    mean = summary["across_splits"]["balanced_accuracy"]["mean"]
    # the one path of a k-fold predicts every development row once: its direction AUC against Hanley-McNeil's band
    labels = pd.read_parquet(run / "predictions.parquet")["label"].to_numpy()
    n_up, n_down = int((labels == 2).sum()), int((labels == 0).sum())
    auc_band = 4 * math.sqrt((n_up + n_down + 1) / (12 * n_up * n_down)) * math.sqrt(HORIZON)
    auc = summary["paths"][0]["direction_auc"]
    if signal:
        assert mean > 1 / 3 + 0.5 * band, f"the planted signal was not learned under CV: {mean:.3f}"
        assert auc > 0.5 + auc_band, f"direction AUC {auc:.3f} with the planted signal"
    else:
        # Balanced accuracy on the no-signal data sits a little above 1/3 by construction (whether a
        # barrier is hit is slightly predictable from volatility; docs/data.md): measured 0.361, 0.015
        # inside the pooled band. It is judged per split, with one split's band as in the contract
        # suite (a leak lifts it far beyond); the direction AUC below is the bias-free canary.
        split_band = chance_band(n_test // len(summary["splits"]), HORIZON)
        assert abs(mean - 1 / 3) < split_band, (
            f"{mean:.3f} on data with no signal (chance 0.333 ± {split_band:.3f}): a leak?")
        assert abs(auc - 0.5) < auc_band, f"direction AUC {auc:.3f} on data with no signal (± {auc_band:.3f}): a leak?"


def test_cv_command_bad_groups_is_one_line(sample_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["cv", "--model", "xgboost", "--data.data_dir", str(sample_dir), "--cv.scheme", "cpcv",
                 "--cv.n_groups", "4", "--cv.n_test_groups", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("mlfactory: error: --cv.n_test_groups 4 with --cv.n_groups 4")
    (status_file,) = tmp_path.glob("lightning_logs/cv/xgboost/*/status.json")
    assert json.loads(status_file.read_text())["status"] == "failed"
    assert not list(tmp_path.glob("lightning_logs/cv/xgboost/*/summary.json"))


def test_cv_command_fits_each_split_from_the_parsed_config(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Through the command line, with two workers: each forked split instantiates the parsed config again."""
    monkeypatch.chdir(tmp_path)
    code = main(["cv", "--model", "xgboost", "--model.n_estimators", "7", "--model.n_jobs", "1",
                 "--data.data_dir", str(sample_dir), "--cv.scheme", "cpcv", "--cv.n_groups", "3",
                 "--cv.n_test_groups", "2", "--cv.workers", "2", "--trainer.enable_progress_bar", "false"])
    (run,) = tmp_path.glob("lightning_logs/cv/xgboost/*")
    assert code == 0 and json.loads((run / "status.json").read_text())["status"] == "complete"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_splits"] == 3 and summary["n_paths"] == 2 and len(summary["paths"]) == 2
    for split in range(3):
        record = run / "splits" / str(split)
        assert json.loads((record / "status.json").read_text())["status"] == "complete"
        assert json.loads((record / "config" / "model_config.json").read_text())["init_args"]["n_estimators"] == 7
        assert (record / "config.yaml").is_file()
        # the split's numbers, without its figures (--cv.split_plots off by default); the cv draws its diagram
        assert (record / "predictions" / "test_predictions.npz").is_file() and not (record / "plots").exists()
    assert list(run.glob("*.png"))
    predictions = pd.read_parquet(run / "predictions.parquet")
    # each of the two paths predicts every development row once
    assert (predictions.groupby("path").size() == summary["n_development_rows"]).all()
    assert not predictions.duplicated(["path", "datetime", "symbol"]).any()
    check_summary(summary, predictions)


def check_summary(summary: dict, predictions: pd.DataFrame) -> None:
    """Every split and path has the five scores; across them, each score's n, mean, std, min, max and
    quantiles, equal to their recomputation; a path's balanced accuracy recomputed from its predictions."""
    from sklearn.metrics import balanced_accuracy_score

    metrics = ("balanced_accuracy", "log_loss", "direction_auc", "ic_mean", "sharpe_annualised")
    for group, entries in (("splits", summary["splits"]), ("paths", summary["paths"])):
        assert len(entries) == summary[f"n_{group}"]
        for entry in entries:
            assert all(np.isfinite(entry[m]) for m in metrics), entry
        for metric in metrics:
            values = np.array([e[metric] for e in entries])
            spread = summary[f"across_{group}"][metric]
            assert spread["n"] == len(values)
            assert spread["mean"] == pytest.approx(values.mean()) and spread["std"] == pytest.approx(values.std(ddof=1))
            assert (spread["min"], spread["max"]) == (values.min(), values.max())
            assert spread["quantiles"] == pytest.approx({str(q): np.quantile(values, q)
                                                         for q in (0.05, 0.25, 0.5, 0.75, 0.95)})
    for entry in summary["paths"]:
        path = predictions[predictions["path"] == entry["path"]]
        assert entry["n_samples"] == len(path)
        assert entry["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(path["label"], path[PROB_COLUMNS].to_numpy().argmax(axis=1)))


def test_compare_shows_a_cross_validation_as_one_row_with_its_spread(walk_forward_run, capsys) -> None:
    from mlfactory.cli import main as cli
    from mlfactory.evaluation.compare import find_runs, leaderboard

    summary, run = walk_forward_run
    assert find_runs([run.parent]) == [run]  # its splits are parts of it, not runs beside it
    [row] = leaderboard([run.parent]).to_dict("records")
    spread = summary["across_splits"]["balanced_accuracy"]
    assert row["status"] == "complete" and row["stage"] == "cv walk_forward" and row["n_splits"] == 3
    assert row["test_balanced_accuracy"] == spread["mean"] and row["test_balanced_accuracy_std"] == spread["std"]
    assert row["model"] == "xgboost" and row["horizon"] == HORIZON
    assert cli(["compare", str(run.parent), "--output", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert "cv walk_forward" in out and "test_balanced_accuracy_std" in out
