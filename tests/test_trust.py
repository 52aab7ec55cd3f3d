"""Runs you can trust: determinism, resume after SIGKILL, atomic records, DDP on CPU, bad input end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
from lightning.pytorch.callbacks import Callback

from mlfactory import FactoryDataModule, RunRecord, create_model
from mlfactory.cli import main
from mlfactory.cli.lightning_cli import new_run_id
from mlfactory.data.container import SPLITS, split_file
from mlfactory.evaluation.compare import leaderboard

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL_LSTM = ["--model", "lstm", "--model.hidden_size", "8", "--model.num_layers", "1", "--data.seq_len", "10"]


def status(run: Path) -> str:
    return json.loads((run / "status.json").read_text())["status"]


def files(run: Path) -> set[str]:
    """The artifact set of a run: relative paths, with event-file names reduced to their kind."""
    names = set()
    for path in run.rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(run))
            names.add("events" if "tfevents" in rel else rel)
    return names


# --- determinism ---------------------------------------------------------------------------------
FAMILIES = {
    "boosting": ("xgboost", {"n_estimators": 30, "max_depth": 3}),
    "classical": ("random_forest", {"n_estimators": 30}),
    "neural": ("lstm", {"hidden_size": 8, "num_layers": 1}),
    "ensemble": ("voting", {"members": [{"name": "xgboost", "n_estimators": 20}, "logistic"]}),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_same_metrics_and_predictions(family, sample_dir, make_trainer):
    name, params = FAMILIES[family]
    outcomes = []
    for attempt in range(2):
        L.seed_everything(7, workers=True)
        trainer = make_trainer(max_epochs=2, name=f"{name}-{attempt}", deterministic=True, limit_train_batches=10)
        trainer.fit(create_model(name, **params), datamodule=FactoryDataModule(data_dir=str(sample_dir), seq_len=10))
        run = Path(trainer.log_dir)
        with np.load(run / "predictions" / "test_predictions.npz") as predictions:
            outcomes.append(
                (json.loads((run / "metrics" / "evaluation_metrics.json").read_text()), predictions["probabilities"])
            )
    assert outcomes[0][0] == outcomes[1][0]
    np.testing.assert_array_equal(outcomes[0][1], outcomes[1][1])


# --- resume --------------------------------------------------------------------------------------
def test_resume_after_sigkill_finishes_the_same_run(sample_dir, tmp_path):
    args = ["fit", *SMALL_LSTM, "--data.data_dir", str(sample_dir), "--trainer.max_epochs", "4", *QUIET]
    command = [sys.executable, "-m", "mlfactory.cli"]
    killed_root, full_root = tmp_path / "killed", tmp_path / "full"
    process = subprocess.Popen(
        [*command, *args, "--trainer.default_root_dir", str(killed_root)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list(killed_root.glob("lightning_logs/lstm/*/checkpoints/last.ckpt")):
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = next(killed_root.glob("lightning_logs/lstm/*"))
    assert status(run) == "running"  # killed: not complete, and nothing claims otherwise
    record = json.loads((run / "status.json").read_text())
    assert record["pid"] == process.pid and record["host"] == socket.gethostname()
    row = leaderboard([killed_root], include_incomplete=True).iloc[0]
    assert row["status"] == "dead" and f"process {process.pid}" in row["problem"]  # not shown as running

    assert main(["fit", "--resume", str(run), *QUIET]) == 0
    assert list(killed_root.glob("lightning_logs/lstm/*")) == [run]  # the same directory
    assert status(run) == "complete"
    history = json.loads((run / "metrics" / "training_metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == list(range(4))

    assert main([*args, "--trainer.default_root_dir", str(full_root)]) == 0
    uninterrupted = next(full_root.glob("lightning_logs/lstm/*"))
    assert files(run) == files(uninterrupted)


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    assert main(["fit", "--resume", str(tmp_path)]) == 1
    assert "checkpoints/last.ckpt" in capsys.readouterr().err


def test_resume_refuses_a_run_that_is_still_alive(tmp_path, capsys):
    # this test's own process plays the fit that is still running: a second fit would share its directory
    record = {"status": "running", "stage": "fit", "pid": os.getpid(), "host": socket.gethostname()}
    (tmp_path / "status.json").write_text(json.dumps(record))
    assert main(["fit", "--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is running as process {os.getpid()}" in err


def test_resume_does_not_judge_a_run_of_another_host(tmp_path, capsys):
    record = {"status": "running", "stage": "fit", "pid": os.getpid(), "host": "another-host"}
    (tmp_path / "status.json").write_text(json.dumps(record))
    assert main(["fit", "--resume", str(tmp_path)]) == 1
    assert "it needs config.yaml and checkpoints/last.ckpt" in capsys.readouterr().err  # past the liveness check


@pytest.fixture(scope="module")
def finished_lstm_run(sample_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume-source")
    args = ["fit", *SMALL_LSTM, "--data.data_dir", str(sample_dir), "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(root), *QUIET]
    assert main(args) == 0
    return next(root.glob("lightning_logs/lstm/*"))


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"not a checkpoint at all"])
def test_resume_or_fit_from_a_damaged_checkpoint_fails_in_one_line(damage, finished_lstm_run, tmp_path, capsys):
    run = copy_run(finished_lstm_run, tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(damage(last.read_bytes()))
    assert main(["fit", "--resume", str(run), *QUIET]) == 1
    fit_from_it = ["fit", *SMALL_LSTM, "--ckpt_path", str(last), "--trainer.default_root_dir", str(tmp_path), *QUIET]
    assert main(fit_from_it) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(f"cannot read checkpoint {last}" in line for line in err), err
    assert status(run) == "complete"  # the run it came from is left as it was
    assert not (tmp_path / "lightning_logs").exists()  # nothing started


@pytest.mark.parametrize("class_path", ["os.system", "subprocess.Popen", "mlfactory.registry.create_model"])
def test_resume_refuses_a_config_that_names_an_unregistered_class(class_path, finished_lstm_run, tmp_path, capsys):
    run = copy_run(finished_lstm_run, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("mlfactory.models.neural.lstm.LSTMModel", class_path))
    assert main(["fit", "--resume", str(run), *QUIET]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"names model '{class_path}', which is not a registered mlfactory model" in err
    assert status(run) == "complete"


def test_resume_refuses_a_config_with_a_foreign_class_anywhere(finished_lstm_run, tmp_path, capsys):
    run = copy_run(finished_lstm_run, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("  callbacks: null", "  callbacks:\n  - class_path: os.system"))
    assert main(["fit", "--resume", str(run), *QUIET]) == 1
    assert "names class 'os.system', which is neither a registered mlfactory model" in capsys.readouterr().err


# --- atomic records ------------------------------------------------------------------------------
class ExplodeAtFitEnd(Callback):
    def on_fit_end(self, trainer, pl_module) -> None:
        raise RuntimeError("boom in a user callback")


def test_a_crash_in_any_callback_leaves_the_run_failed(sample_dir, tmp_path):
    trainer = L.Trainer(
        max_epochs=1, default_root_dir=str(tmp_path), callbacks=[RunRecord(), ExplodeAtFitEnd()],
        enable_progress_bar=False, enable_model_summary=False,
    )
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(create_model("xgboost", n_estimators=5), datamodule=FactoryDataModule(data_dir=str(sample_dir)))
    record = json.loads((Path(trainer.log_dir) / "status.json").read_text())
    assert record["status"] == "failed" and "boom in a user callback" in record["error"]


def test_runs_started_in_the_same_second_get_distinct_directories():
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200


# --- distributed ---------------------------------------------------------------------------------
def test_ddp_on_cpu_writes_the_whole_record(sample_dir, tmp_path):
    args = [*SMALL_LSTM, "--data.data_dir", str(sample_dir), "--trainer.max_epochs", "2",
            "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
            "--trainer.default_root_dir", str(tmp_path), *QUIET]
    result = subprocess.run([sys.executable, "-m", "mlfactory.cli", "fit", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(tmp_path.glob("lightning_logs/lstm/*"))
    assert len(runs) == 1 and status(runs[0]) == "complete"
    run = runs[0]
    assert json.loads((run / "config" / "training_config.json").read_text())["trainer"]["world_size"] == 2
    # predictions cover every sample of the split, not one rank's shard
    from mlfactory.data.container import TimeSeriesDataContainer

    expected = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5).split("val").window_end_rows(10)
    with np.load(run / "predictions" / "val_predictions.npz") as predictions:
        np.testing.assert_array_equal(predictions["row"], expected)
    history = json.loads((run / "metrics" / "training_metrics.json").read_text())["history"]
    assert len(history) == 2 and "val_loss" in history[-1]


# --- bad input, end to end -----------------------------------------------------------------------
def broken(sample_dir: Path, target: Path, edit) -> Path:
    target.mkdir(parents=True)
    for split in SPLITS:
        frame = pd.read_parquet(sample_dir / split_file(split))
        edit(split, frame, target / split_file(split))
    return target


def _truncate(split, frame, path):
    frame.to_parquet(path, index=False)
    if split == "train":
        path.write_bytes(path.read_bytes()[:500])


def _wrong_dtype(split, frame, path):
    frame.assign(label_h5=frame["label_h5"].astype(str)).to_parquet(path, index=False)


def _wrong_schema(split, frame, path):
    frame.drop(columns="datetime").to_parquet(path, index=False)


def _zero_rows(split, frame, path):
    (frame.iloc[:0] if split == "test" else frame).to_parquet(path, index=False)


def _single_class(split, frame, path):
    (frame.assign(label_h5=1) if split == "train" else frame).to_parquet(path, index=False)


def _single_row(split, frame, path):
    (frame.iloc[:1] if split == "train" else frame).to_parquet(path, index=False)


@pytest.mark.parametrize("edit", [_truncate, _wrong_dtype, _wrong_schema, _zero_rows, _single_class, _single_row])
def test_broken_data_exits_non_zero_and_nothing_is_complete(edit, sample_dir, tmp_path, capsys):
    data = broken(sample_dir, tmp_path / "data", edit)
    code = main(["fit", "--model", "xgboost", "--data.data_dir", str(data),
                 "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("mlfactory: error:")
    assert all(status(run) == "failed" for run in tmp_path.glob("lightning_logs/*/*"))


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "xgboost", "--data.horizon", "7"],  # a horizon that does not exist
        ["--model", "nosuchmodel"],
        ["--config", "RECIPE"],  # a recipe with a typo'd key
    ],
)
def test_bad_command_lines_exit_non_zero(args, sample_dir, tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model: xgboost\ntrainer:\n  max_epoch: 3\n")
    args = [str(recipe) if a == "RECIPE" else a for a in args]
    try:
        code = main(["fit", *args, "--data.data_dir", str(sample_dir), "--trainer.default_root_dir", str(tmp_path), *QUIET])
    except SystemExit as exit_info:  # usage errors exit from the parser with code 2
        code = exit_info.code
    assert code not in (0, None)
    assert not any(status(run) == "complete" for run in tmp_path.glob("lightning_logs/*/*"))


def _single_class_val(split, frame, path):
    (frame.assign(label_h5=0) if split == "val" else frame).to_parquet(path, index=False)


def test_a_validation_split_of_one_class_trains_with_a_clear_warning(sample_dir, tmp_path):
    data = broken(sample_dir, tmp_path / "data", _single_class_val)
    expected = r"val_scaled.parquet: label_h5 holds only class 'neutral' in the val split"
    with pytest.warns(UserWarning, match=expected) as caught:
        code = main(["fit", "--model", "xgboost", "--model.n_estimators", "5", "--data.data_dir", str(data),
                     "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert code == 0
    message = next(str(w.message) for w in caught if "val_scaled" in str(w.message))
    assert "balanced accuracy" in message and "early stopping, are not meaningful" in message
