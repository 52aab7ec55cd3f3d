"""mlfactory compare: the leaderboard read from run records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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


def test_command_prints_and_writes_csv_and_plot_into_the_current_directory(runs, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["compare", str(runs), "--sort", "test_balanced_accuracy"]) == 0
    out = capsys.readouterr().out
    assert out.index("lstm") < out.index("xgboost") and "\n2 runs; wrote leaderboard.csv" in out
    written = pd.read_csv(here / "leaderboard.csv")
    assert written["run_id"].tolist() == ["b", "a"]
    assert (here / "leaderboard.png").stat().st_size > 1000
    assert not (runs / "leaderboard.csv").exists()  # never inside the runs' folder unless asked (--output)


def test_command_error_for_missing_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err


# --- broken, dead and unknown: never shown as results ------------------------------------------
def rewrite(run: Path, relative: str, text: str) -> None:
    (run / relative).write_text(text)


def test_a_truncated_evaluation_file_makes_the_run_broken_not_a_result(runs):
    path = runs / "xgboost" / "a" / "metrics" / "evaluation_metrics.json"
    path.write_text(path.read_text()[:40])  # cut mid-write, e.g. a full disk under an older version
    assert leaderboard([runs])["run_id"].tolist() == ["b"]  # excluded from the ranking
    table = leaderboard([runs], include_incomplete=True).set_index("run_id")
    assert table.loc["a", "status"] == "broken"
    assert "metrics/evaluation_metrics.json is unreadable" in table.loc["a", "problem"]
    assert table.loc["a", ["test_balanced_accuracy", "test_sharpe", "train_seconds"]].isna().all()


def test_an_unreadable_training_config_is_broken_and_its_data_unknown(runs):
    rewrite(runs / "lstm" / "b", "config/training_config.json", '{"data": {"hori')
    table = leaderboard([runs], include_incomplete=True).set_index("run_id")
    assert table.loc["b", "status"] == "broken" and table.loc["b", "data"] == "unknown"
    assert "config/training_config.json" in table.loc["b", "problem"]
    assert table.loc["a", "data"] == "sample"  # its config says it used the embedded sample


def test_a_complete_run_missing_a_file_of_its_stage_is_broken(runs):
    (runs / "xgboost" / "a" / "metrics" / "training_metrics.json").unlink()
    rewrite(runs / "lstm" / "b", "metrics/evaluation_metrics.json", json.dumps({"val": {"balanced_accuracy": 0.5}}))
    table = leaderboard([runs], include_incomplete=True).set_index("run_id")
    assert table.loc["a", "problem"] == "metrics/training_metrics.json is missing"
    assert table.loc["b", "problem"] == "metrics/evaluation_metrics.json holds no test scores"
    assert set(table["status"]) == {"broken", "failed"}


def test_a_failed_run_without_a_training_config_shows_unknown_data_and_its_error(runs):
    failed = runs / "lstm" / "c"
    (failed / "config" / "training_config.json").unlink()
    rewrite(failed, "status.json", json.dumps({"status": "failed", "stage": "fit", "error": "DataError: bad"}))
    row = leaderboard([runs], include_incomplete=True).set_index("run_id").loc["c"]
    assert (row["status"], row["data"], row["problem"]) == ("failed", "unknown", "DataError: bad")


def test_an_unreadable_status_is_broken(runs):
    rewrite(runs / "lstm" / "b", "status.json", "")  # a status write that a full disk cut to nothing
    row = leaderboard([runs], include_incomplete=True).set_index("run_id").loc["b"]
    assert row["status"] == "broken" and "status.json is unreadable" in row["problem"]


def test_all_lists_complete_runs_first_whatever_the_others_scored(runs):
    # the failed run scored 0.99: with --all it still comes after every complete run
    assert leaderboard([runs], include_incomplete=True)["run_id"].tolist() == ["b", "a", "c"]


def finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    "pid, host, expected",
    [
        (lambda: finished_pid(), socket.gethostname, "dead"),  # this host, process gone
        (os.getpid, socket.gethostname, "running"),  # this host, process alive
        (lambda: finished_pid(), lambda: "another-host", "running"),  # cannot tell from here
        (lambda: None, socket.gethostname, "running"),  # a record without a pid
    ],
)
def test_a_running_run_whose_process_is_gone_is_dead(runs, pid, host, expected):
    record = {"status": "running", "stage": "fit", "pid": pid(), "host": host()}
    rewrite(runs / "lstm" / "c", "status.json", json.dumps(record))
    row = leaderboard([runs], include_incomplete=True).set_index("run_id").loc["c"]
    assert row["status"] == expected
    if expected == "dead":
        assert f"process {record['pid']}" in row["problem"]
    assert "c" not in leaderboard([runs])["run_id"].tolist()


def test_command_all_shows_status_and_problem(runs, capsys):
    path = runs / "xgboost" / "a" / "metrics" / "evaluation_metrics.json"
    path.write_text("{")
    assert main(["compare", str(runs), "--all", "--output", str(runs)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "xgboost" in line)
    assert "broken" in line and "metrics/evaluation_metrics.json is unreadable" in line
    written = pd.read_csv(runs / "leaderboard.csv")
    assert written["status"].tolist() == ["complete", "failed", "broken"]  # no scores sort last


@pytest.mark.parametrize("top", ["-1", "0"])
def test_command_refuses_a_non_positive_top(runs, capsys, top):
    assert main(["compare", str(runs), "--top", top, "--output", str(runs)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--top {top}: pass a positive number" in err
    assert not (runs / "leaderboard.csv").exists()


def test_command_refuses_an_output_that_is_a_file(runs, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["compare", str(runs), "--output", str(afile)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file; pass a folder" in err
    assert afile.read_text() == "keep me"
