"""mlfactory tune end to end on the sample data: trials as run records, pruning, keep, best.yaml, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlfactory.cli import main

def load_study(root: Path, name: str = "lightgbm"):
    import optuna

    url = f"sqlite:///{(root / 'lightning_logs' / 'tune' / name / 'study.db').resolve()}"
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def study_root(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory, tune_args) -> Path:
    """Six lightgbm trials, the median pruner after two, a report every 5 rounds, the best 2 kept whole."""
    root = tmp_path_factory.mktemp("tune")
    code = main(tune_args(sample_dir, root, "--tune.n_trials", "6", "--tune.pruner_startup_trials", "2",
                          "--tune.report_every", "5", "--tune.keep", "2"))
    assert code == 0
    return root


def test_every_trial_is_a_run_record_and_pruned_trials_say_so(study_root: Path) -> None:
    from optuna.trial import TrialState

    study = load_study(study_root)
    trials = study.get_trials()
    assert len(trials) == 6 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    for trial in trials:
        record = Path(trial.user_attrs["run_dir"])
        status = json.loads((record / "status.json").read_text())
        assert status["status"] == ("pruned" if trial.state == TrialState.PRUNED else "complete")
        config = yaml.safe_load((record / "config.yaml").read_text())["model"]["init_args"]
        assert all(config[k] == v for k, v in trial.params.items())  # the trial's own parameters were fitted
        if trial.state == TrialState.COMPLETE:
            fitted = json.loads((record / "config" / "model_config.json").read_text())["init_args"]
            assert all(fitted[k] == v for k, v in trial.params.items())
    for trial in pruned:  # stopped by the pruner at a reported round, before early stopping
        assert trial.intermediate_values and max(trial.intermediate_values) % 5 == 0


def test_only_the_best_keep_trials_keep_their_whole_record(study_root: Path) -> None:
    from optuna.trial import TrialState

    study = load_study(study_root)
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    for rank, trial in enumerate(complete):
        record = Path(trial.user_attrs["run_dir"])
        assert (record / "checkpoints").is_dir() == (rank < 2) and (record / "bundle").is_dir() == (rank < 2)
        assert (record / "metrics" / "evaluation_metrics.json").is_file()  # metrics stay for every trial
        assert not (record / "plots").exists()  # numbers only: no figures drawn for a trial


def test_summary_deflates_the_best_sharpe_and_gives_pbo(study_root: Path) -> None:
    from optuna.trial import TrialState

    summary = json.loads((study_root / "lightning_logs" / "tune" / "lightgbm" / "summary.json").read_text())
    study = load_study(study_root)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert summary["best"]["number"] == study.best_trial.number and summary["best"]["value"] == study.best_value
    dsr = summary["deflated_sharpe"]
    assert dsr["n_trials"] == len(complete) and 0.0 <= dsr["dsr"] <= 1.0
    sharpes = [t.user_attrs["period_sharpe"] for t in complete]
    assert dsr["variance"] == pytest.approx(np.var(sharpes, ddof=1))
    assert dsr["sharpe"] == pytest.approx(study.best_trial.user_attrs["period_sharpe"])
    pbo = summary["pbo"]
    assert 0.0 <= pbo["pbo"] <= 1.0 and pbo["n_trials"] == len(complete) and len(pbo["logits"]) == pbo["n_combinations"]


def test_best_yaml_reproduces_the_best_trial(study_root: Path) -> None:
    best = json.loads((study_root / "lightning_logs" / "tune" / "lightgbm" / "summary.json").read_text())["best"]
    recipe = study_root / "lightning_logs" / "tune" / "lightgbm" / "best.yaml"
    assert "mlfactory fit --config best.yaml" in recipe.read_text()
    assert main(["fit", "--config", str(recipe)]) == 0
    (run,) = (study_root / "lightning_logs" / "lightgbm").glob("*")
    val = json.loads((run / "metrics" / "evaluation_metrics.json").read_text())["val"]
    assert val["log_loss"] == pytest.approx(best["value"], abs=1e-9)


def test_a_killed_study_resumes_to_exactly_its_trials(sample_dir: Path, tmp_path: Path, tune_args) -> None:
    from optuna.trial import TrialState

    args = tune_args(sample_dir, tmp_path, "--tune.n_trials", "2", "--tune.pruner", "none")
    worker = subprocess.Popen([sys.executable, "-m", "mlfactory.cli", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    second = tmp_path / "lightning_logs" / "tune" / "lightgbm" / "trials" / "1" / "status.json"
    try:
        deadline = time.time() + 120
        while not second.is_file() and worker.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert second.is_file(), "the worker never started its second trial"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert main(args) == 0  # the same command again resumes the study
    trials = load_study(tmp_path).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 2 and [t.number for t in failed] == [1]  # the killed trial, run again once
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == 1]
    assert retry.params == failed[0].params


def test_cv_objective_reports_each_split(sample_dir: Path, tmp_path: Path, tune_args) -> None:
    args = tune_args(sample_dir, tmp_path, "--tune.n_trials", "1", "--tune.objective", "cv", "--tune.metric",
                     "balanced_accuracy", "--cv.n_splits", "3", "--model.n_estimators", "20")
    assert main(args) == 0
    study = load_study(tmp_path)
    for trial in study.get_trials():
        assert len(trial.intermediate_values) >= 2  # the running mean after each finished split
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert trial.value == pytest.approx(summary["across_splits"]["balanced_accuracy"]["mean"])
    assert "# Its score was a cross-validation" in (tmp_path / "lightning_logs" / "tune" / "lightgbm" / "best.yaml"
                                                    ).read_text()


@pytest.mark.parametrize("extra, words", [
    (["--tune.space", "{space}"], "num_leafs is not a parameter lightgbm searches"),
    (["--tune.space", "{empty}"], "the range [64, 8] is empty"),
    (["--tune.storage", "postgresql://tuner:secret@127.0.0.1:1/study"], "cannot open the study storage "
                                                                        "postgresql://tuner:***@127.0.0.1:1/study"),
])
def test_bad_input_is_one_line_and_nothing_complete(sample_dir: Path, tmp_path: Path, capsys, tune_args, extra,
                                                   words) -> None:
    (tmp_path / "space.yaml").write_text("num_leafs: {low: 8, high: 64}\n")
    (tmp_path / "empty.yaml").write_text("num_leaves: {low: 64, high: 8}\n")
    extra = [e.format(space=tmp_path / "space.yaml", empty=tmp_path / "empty.yaml") for e in extra]
    code = main(tune_args(sample_dir, tmp_path, "--tune.n_trials", "2", *extra))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("mlfactory: error: ") and words in err[-1]
    assert "Traceback" not in "\n".join(err) and "secret" not in "\n".join(err)
    study_dir = tmp_path / "lightning_logs" / "tune" / "lightgbm"
    assert not list(study_dir.glob("trials/*")) and not (study_dir / "summary.json").exists()


def test_resuming_with_other_categorical_choices_is_one_line(sample_dir: Path, tmp_path: Path, capsys,
                                                             tune_args) -> None:
    # Optuna fails every trial of a study whose categorical choices changed: refused before any trial
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("num_leaves: {choices: [8, 16]}\n")
    second.write_text("num_leaves: {choices: [16, 32]}\n")
    short = ("--tune.pruner", "none", "--model.n_estimators", "5")
    assert main(tune_args(sample_dir, tmp_path, "--tune.n_trials", "1", "--tune.space", str(first), *short)) == 0
    capsys.readouterr()
    code = main(tune_args(sample_dir, tmp_path, "--tune.n_trials", "2", "--tune.space", str(second), *short))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "drew num_leaves from [8, 16]" in err[-1] and "offers [16, 32]" in err[-1]
    assert len(load_study(tmp_path).get_trials()) == 1  # no trial was started, none failed
    assert main(tune_args(sample_dir, tmp_path, "--tune.n_trials", "2", "--tune.space", str(first), *short)) == 0
