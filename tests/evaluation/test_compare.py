"""mlfactory compare: the leaderboard read from run records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.errors import RunError
from mlfactory.evaluation.compare import leaderboard


def make_run(root: Path, model: str, run_id: str, status: str, test_bacc: float, test_loss: float) -> Path:
    run = root / model / run_id
    (run / "config").mkdir(parents=True)
    (run / "metrics").mkdir()
    (run / "status.json").write_text(json.dumps({"status": status, "stage": "fit"}))
    (run / "config" / "model_config.json").write_text(json.dumps({"name": model}))
    (run / "config" / "training_config.json").write_text(json.dumps({"data": {"horizon": 5, "data_dir": None}}))
    report = {"balanced_accuracy": test_bacc, "log_loss": test_loss, "trading": {"sharpe_annualised": 1.5}}
    (run / "metrics" / "evaluation_metrics.json").write_text(json.dumps({"val": report, "test": report}))
    (run / "metrics" / "training_metrics.json").write_text(json.dumps({"train_seconds": 2.0}))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    make_run(tmp_path, "xgboost", "a", "complete", 0.41, 1.02)
    make_run(tmp_path, "lstm", "b", "complete", 0.45, 1.05)
    make_run(tmp_path, "lstm", "c", "failed", 0.99, 0.1)
    return tmp_path


def test_sorted_best_first_and_only_complete_runs(runs):
    table = leaderboard([runs])
    assert table["run_id"].tolist() == ["b", "a"]
    assert table.loc[0, "test_sharpe"] == 1.5 and table.loc[0, "data"] == "sample"


def test_losses_sort_ascending(runs):
    assert leaderboard([runs], sort="test_log_loss")["run_id"].tolist() == ["a", "b"]


def test_all_includes_failed_runs(runs):
    assert set(leaderboard([runs], include_incomplete=True)["status"]) == {"complete", "failed"}


def test_unknown_sort_column_lists_the_choices(runs):
    with pytest.raises(RunError, match="cannot sort by 'sharp'.*test_sharpe"):
        leaderboard([runs], sort="sharp")


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no runs found"):
        leaderboard([tmp_path])


def test_command_prints_and_writes_csv_and_plot(runs, capsys):
    assert main(["compare", str(runs), "--sort", "test_balanced_accuracy"]) == 0
    out = capsys.readouterr().out
    assert out.index("lstm") < out.index("xgboost") and "2 runs" in out
    written = pd.read_csv(runs / "leaderboard.csv")
    assert written["run_id"].tolist() == ["b", "a"]
    assert (runs / "leaderboard.png").stat().st_size > 1000


def test_command_error_for_missing_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err
