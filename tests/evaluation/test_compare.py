"""mlfactory compare: the leaderboard read from run records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.errors import RunError
from mlfactory.evaluation.classification import classification_report
from mlfactory.evaluation.compare import bootstrap_ci, confusion_scores, leaderboard


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


def test_a_pruned_tune_trial_is_pruned_with_its_reason_not_broken(runs):
    pruned = runs / "lstm" / "c"
    rewrite(pruned, "status.json", json.dumps({"status": "pruned", "stage": "fit", "reason": "trial 3 pruned at epoch 2"}))
    row = leaderboard([runs], include_incomplete=True).set_index("run_id").loc["c"]
    assert (row["status"], row["problem"]) == ("pruned", "trial 3 pruned at epoch 2")
    assert "c" not in set(leaderboard([runs])["run_id"])  # only complete runs are ranked


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


# --- stage, evaluations, hyper-parameters, integers, top ---------------------------------------
def set_params(run: Path, model_args: dict, **data) -> None:
    """Give a fabricated run its model arguments and data settings."""
    config = json.loads((run / "config" / "model_config.json").read_text())
    (run / "config" / "model_config.json").write_text(json.dumps({**config, "init_args": model_args}))
    (run / "config" / "training_config.json").write_text(
        json.dumps({"data": {"horizon": 5, "data_dir": None, "seq_len": 30, **data}}))


def evaluation_run(run: Path, stage: str) -> None:
    (run / "config").mkdir(parents=True)
    (run / "metrics").mkdir()
    (run / "status.json").write_text(json.dumps({"status": "complete", "stage": stage}))
    (run / "config" / "model_config.json").write_text(json.dumps({"name": "lstm"}))
    (run / "config" / "training_config.json").write_text(json.dumps({"data": {"horizon": 5, "data_dir": None}}))
    (run / "metrics" / "evaluation_metrics.json").write_text(json.dumps({"test": {"balanced_accuracy": 0.7}}))


def test_evaluations_join_their_fit_and_others_are_labelled(runs, tmp_path):
    fit = runs / "lstm" / "b"
    evaluation_run(fit / "evaluations" / "test-1", "test")  # kept inside the fit's directory
    beside = runs / "lstm" / "t2"  # a test run of the old layout: its config.yaml names the fit's checkpoint
    evaluation_run(beside, "test")
    (beside / "config.yaml").write_text(f"ckpt_path: {fit / 'checkpoints' / 'best.ckpt'}\n")
    elsewhere = runs / "lstm" / "t3"  # a checkpoint of no listed fit
    evaluation_run(elsewhere, "test")
    (elsewhere / "config.yaml").write_text("ckpt_path: /somewhere/else.ckpt\n")
    table = leaderboard([runs]).set_index("run_id")
    assert table.loc["b", "evaluations"] == "test-1; test t2"
    assert table.loc["b", "stage"] == "fit" and set(table.index) == {"a", "b", "t3"}
    assert (table.loc["t3", "stage"], table.loc["t3", "evaluates"]) == ("test", "/somewhere/else.ckpt")


def test_hyper_parameters_that_differ_within_a_model_get_columns(runs, tmp_path, monkeypatch, capsys):
    make_run(runs, "lstm", "d", "complete", 0.44, 1.0)
    set_params(runs / "lstm" / "b", {"hidden_size": 64, "dropout": 0.1})
    set_params(runs / "lstm" / "d", {"hidden_size": 128, "dropout": 0.1})
    set_params(runs / "xgboost" / "a", {"max_depth": 6, "dropout": 0.5})  # another model: not a difference
    table = leaderboard([runs]).set_index("run_id")
    assert [c for c in table.columns if c.startswith("hp.")] == ["hp.hidden_size"]
    assert (table.loc["b", "hp.hidden_size"], table.loc["d", "hp.hidden_size"]) == (64, 128)
    set_params(runs / "lstm" / "d", {"hidden_size": 128, "dropout": 0.1}, seq_len=60)  # data: across all runs
    assert "hp.data.seq_len" in leaderboard([runs]).columns
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(runs), "--top", "2"]) == 0
    out = capsys.readouterr().out
    header, first = out.splitlines()[:2]
    assert "hp.hidden_size" in header and "stage" in header
    assert " 64 " in first and "64.0" not in out and "5.0000" not in out  # integers print as integers
    assert "None" not in out  # a score no run has is NaN, as any other missing score
    assert "\n2 of 3 runs; wrote" in out


def test_horizon_prints_as_an_integer_beside_a_run_without_one(runs, tmp_path, monkeypatch, capsys):
    (runs / "xgboost" / "a" / "config" / "training_config.json").write_text(json.dumps({"data": {"data_dir": None}}))
    table = leaderboard([runs])
    assert str(table["horizon"].dtype) == "Int64"
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "5.0" not in out and "<NA>" in out


# --- confidence intervals ------------------------------------------------------------------------
def save_predictions(run: Path, split: str, labels, predicted, timestamps) -> None:
    probs = np.full((len(labels), 3), 0.1, dtype=np.float32)
    probs[np.arange(len(labels)), predicted] = 0.8
    (run / "predictions").mkdir(exist_ok=True)
    np.savez(run / "predictions" / f"{split}_predictions.npz", probabilities=probs, predicted_class=np.asarray(predicted),
             label=np.asarray(labels), datetime=np.asarray(timestamps, dtype="datetime64[ns]"),
             confidence=probs.max(axis=1), row=np.arange(len(labels)))


def minutes(n_days: int, per_day: int) -> np.ndarray:
    start = np.datetime64("2024-01-01T00:00", "ns")
    return np.concatenate([start + np.timedelta64(d, "D") + np.arange(per_day) * np.timedelta64(1, "m")
                           for d in range(n_days)])


def test_the_bootstrap_resamples_days_not_rows():
    # 40 days of 100 rows; a day is either all right or all wrong: the noise is in the days
    rng = np.random.default_rng(1)
    good_days = rng.permutation(np.repeat([True, False], 20))
    labels = rng.integers(0, 3, 4000)
    predicted = np.where(np.repeat(good_days, 100), labels, (labels + 1) % 3)
    interval = bootstrap_ci(labels, predicted, minutes(40, 100))
    assert (interval["blocks"], interval["block"]) == (40, "1 day")
    low, high = interval["accuracy"]
    # about 0.5 ± 1.96 * sqrt(0.25 / 40) = ±0.155 over days; resampling rows would give ±0.016
    assert low < 0.5 < high and 0.25 < high - low < 0.4


def test_a_short_split_is_cut_into_twenty_blocks_and_a_perfect_model_has_no_width():
    labels = np.tile([0, 1, 2], 200)
    interval = bootstrap_ci(labels, labels, minutes(1, 600))
    assert interval["blocks"] == 20 and interval["block"] == "30 min"
    assert interval["balanced_accuracy"] == (1.0, 1.0)


def test_interval_scores_are_the_reports_scores():
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    labels[labels == 1] = 0  # a class absent from the labels
    matrix = np.bincount(3 * labels + predicted, minlength=9).reshape(3, 3)
    scores = confusion_scores(matrix)
    probs = np.eye(3)[predicted]
    report = classification_report(probs, labels)
    for name in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert scores[name] == pytest.approx(report[name], abs=1e-12)


@pytest.fixture
def noisy_runs(tmp_path: Path) -> Path:
    """Three runs on 30 days of test predictions: two close together, one far behind."""
    rng = np.random.default_rng(2)
    times = minutes(30, 60)
    labels = rng.integers(0, 3, len(times))
    for run_id, skill, score in (("best", 0.60, 0.60), ("close", 0.58, 0.58), ("far", 0.30, 0.30)):
        run = make_run(tmp_path, "lstm", run_id, "complete", score, 1.0)
        right = rng.random(len(times)) < skill
        save_predictions(run, "test", labels, np.where(right, labels, (labels + 1) % 3), times)
    return tmp_path


def test_runs_inside_the_leaders_noise_are_marked(noisy_runs):
    table = leaderboard([noisy_runs], sort="test_accuracy").set_index("run_id")
    assert table.loc["best", "noise"] == "leader"
    assert table.loc["close", "noise"] == "within noise" and table.loc["far", "noise"] == ""
    assert table.loc["best", "test_accuracy_lo"] < table.loc["close", "test_accuracy_hi"]
    assert table.loc["far", "test_accuracy_hi"] < table.loc["best", "test_accuracy_lo"]
    assert table.loc["best", "ci_block"] == "30 x 1 day"
    assert pd.isna(table.loc["best", "val_accuracy_lo"])  # no val predictions saved: no interval, no error


def test_the_plot_draws_intervals_and_the_chance_line(noisy_runs, tmp_path, monkeypatch, capsys):
    from mlfactory.evaluation.compare import leaderboard_figure

    table = leaderboard([noisy_runs], sort="test_balanced_accuracy")
    figure = leaderboard_figure(table, "test_balanced_accuracy")
    ax = figure.axes[0]
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_xdata()[0] == pytest.approx(1 / 3)
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"leader", "within the leader's noise",
                                                                   "clearly behind the leader", "chance (0.333)"}
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(noisy_runs), "--sort", "test_balanced_accuracy"]) == 0
    out = capsys.readouterr().out
    assert "test_balanced_accuracy_lo" in out.splitlines()[0] and "within noise" in out


def test_compare_and_list_runs_import_no_training_library(noisy_runs, tmp_path):
    code = (
        "import sys, mlfactory\n"
        "from mlfactory.cli import main\n"
        f"assert main(['compare', {str(noisy_runs)!r}, '--output', {str(tmp_path)!r}]) == 0\n"
        f"assert len(mlfactory.list_runs({str(noisy_runs)!r})) == 3\n"
        "heavy = [m for m in ('torch', 'lightning', 'xgboost') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_sharpe_interval_is_around_the_trading_reports_ratio():
    from mlfactory.evaluation.compare import sharpe_ci
    from mlfactory.evaluation.trading import trading_report

    rng = np.random.default_rng(3)
    times = np.repeat(minutes(30, 60), 2)  # two symbols, 30 days of 60 bars
    probs = rng.dirichlet(np.ones(3), len(times))
    fwd = rng.normal(0.0002, 0.001, len(times)) + 0.001 * (probs.argmax(axis=1) - 1)  # the signal is right on average
    report = trading_report(probs, fwd, times, horizon=5)
    result = sharpe_ci((probs.argmax(axis=1) - 1) * fwd, times, 5, report["sharpe_periods_per_year"])
    assert result["sharpe"] == pytest.approx(report["sharpe_annualised"])
    low, high = result["interval"]
    assert 0 < low < result["sharpe"] < high and (result["blocks"], result["block"]) == (30, "1 day")
