"""Checkpoints and bundles written by earlier mlfactory code still load and predict what they predicted.

tests/golden/v1 was written by tests/golden/build.py (one model per family: boosting, classical,
neural, a mixed ensemble) before the model-contract redesign. Today's code must read those files
and reproduce the stored test predictions on the same data: the suite's sample splits, which the
generator rebuilds identically. A format change that breaks this needs a reader for the old format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v1"
NAMES = ("xgboost", "logistic", "lstm", "voting")
PROBS = ["p_down", "p_neutral", "p_up"]


def golden_predictions(name: str, sample_dir: Path) -> pd.DataFrame:
    """The stored test predictions with each row's identity (datetime, symbol) from the sample test split."""
    saved = np.load(GOLDEN / name / "test_predictions.npz")
    test = pd.read_parquet(sample_dir / "test_scaled.parquet", columns=["datetime", "symbol"])
    table = test.iloc[saved["row"]].reset_index(drop=True)
    table["datetime"] = pd.to_datetime(table["datetime"], utc=True)
    table[["p0", "p1", "p2"]] = saved["probabilities"]
    return table


def test_golden_fixtures_match_the_suite_sample_data(sample_dir):
    written = json.loads((GOLDEN / "README.json").read_text())
    assert written["sample"]["n_bars"] == 2500 and written["sample"]["timeframes"] == ["1min"]
    assert set(written["models"]) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_an_old_bundle_predicts_what_its_run_predicted(name, sample_dir, raw_test):
    from mlfactory.inference.bundle import ModelBundle

    out = ModelBundle.load(GOLDEN / name / "bundle").predict(raw_test)
    out["datetime"] = pd.to_datetime(out["datetime"], utc=True)
    reference = golden_predictions(name, sample_dir)
    merged = reference.merge(out, on=["datetime", "symbol"], how="left", validate="one_to_one")
    assert merged["has_history"].all()
    np.testing.assert_allclose(merged[PROBS].to_numpy(), merged[["p0", "p1", "p2"]].to_numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_an_old_checkpoint_tests_to_the_same_predictions(name, sample_dir, tmp_path, capsys):
    code = main(["test", "--ckpt_path", str(GOLDEN / name / "best.ckpt"), "--data.data_dir", str(sample_dir),
                 "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false"])
    assert code == 0, capsys.readouterr().err
    [predictions] = tmp_path.glob("lightning_logs/*/*/predictions/test_predictions.npz")
    saved, golden = np.load(predictions), np.load(GOLDEN / name / "test_predictions.npz")
    np.testing.assert_array_equal(saved["row"], golden["row"])
    np.testing.assert_allclose(saved["probabilities"], golden["probabilities"], rtol=0, atol=1e-5)
