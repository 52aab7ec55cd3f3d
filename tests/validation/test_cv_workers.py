"""``--cv.workers``: forked splits give the record of one process; a failing or dying split fails the run
cleanly; the per-split hook; any registered model (ensembles, multires) runs under cv."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.errors import MLFactoryError, ModelError
from mlfactory.validation.runner import PROB_COLUMNS, CVSettings
from mlfactory.validation.workers import WorkerDied

TINY_LSTM = {"hidden_size": 8, "num_layers": 1, "learning_rate": 3e-3}


def split_statuses(run: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in sorted(run.glob("splits/*/status.json"))}


def assert_failed_cleanly(run: Path, words: str) -> None:
    """status.json failed with the error; nothing that reads as a finished (or still running) record."""
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and words in status["error"]
    assert not (run / "summary.json").exists() and not (run / "predictions.parquet").exists()
    assert "running" not in split_statuses(run).values()


def test_workers_give_the_record_of_one_process(sample_dir: Path, tmp_path: Path, cross_validate) -> None:
    """A neural model whose splits the caller does not seed: each split starts from the same random
    state whether the splits run one after another here or in two forked workers. The per-split hook
    sees every split's summary entry either way."""
    from mlfactory.inference import bars

    records = {}
    for workers, threads in ((1, 1), (2, 2)):
        bars._WARMUPS.clear()
        seen: dict[int, dict] = {}
        summary, run = cross_validate(sample_dir, tmp_path / str(workers), CVSettings("kfold", n_splits=2,
                                      workers=workers), "lstm", data={"seq_len": 8, "threads": threads},
                                      on_split_end=lambda k, entry: seen.setdefault(k, entry), **TINY_LSTM)
        assert seen == {entry["split"]: entry for entry in summary["splits"]}
        assert json.loads((run / "status.json").read_text())["status"] == "complete"
        assert set(split_statuses(run).values()) == {"complete"}
        records[workers] = summary, pd.read_parquet(run / "predictions.parquet"), run
        # the bundles' warm-up: measured by the process that wrote them, and before forking when there are workers
        assert len(bars._WARMUPS) == 1
    (one, table_one, _), (two, table_two, run_two) = records[1], records[2]
    assert one["threads_per_worker"] is None and two["threads_per_worker"] == 1
    pd.testing.assert_frame_equal(table_one, table_two)
    assert one["splits"] == two["splits"] and one["paths"] == two["paths"]
    assert {"balanced_accuracy", "log_loss", "direction_auc", "sharpe_annualised", "ic_mean"} <= set(two["splits"][0])
    for k in range(2):  # each worker fitted with its share of the threads, and its record says so
        config = json.loads((run_two / "splits" / str(k) / "config" / "training_config.json").read_text())
        assert config["data"]["threads"] == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_split_fails_the_run_in_one_line(workers: int, sample_dir: Path, tmp_path: Path,
                                                   cross_validate) -> None:
    def fail_split_1(split_dir: Path) -> None:
        if split_dir.name == "1":
            raise ModelError("cannot fit this split (planted)")

    with pytest.raises(ModelError) as caught:
        cross_validate(sample_dir, tmp_path, CVSettings("kfold", n_splits=2, workers=workers),
                       before_fit=fail_split_1)
    assert str(caught.value) == "cv split 1: cannot fit this split (planted)"
    assert_failed_cleanly(tmp_path / "cv", "cv split 1: cannot fit this split (planted)")
    # the status keeps where it happened: with workers, the worker's own traceback
    traceback = json.loads((tmp_path / "cv" / "status.json").read_text())["traceback"]
    assert "fail_split_1" in traceback and (workers == 1 or "in the worker process of cv split 1" in traceback)


def test_a_worker_that_dies_fails_the_run_in_one_line(sample_dir: Path, tmp_path: Path, cross_validate) -> None:
    def die_in_split_0(split_dir: Path) -> None:
        if split_dir.name == "0":
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would

    with pytest.raises(WorkerDied) as caught:
        cross_validate(sample_dir, tmp_path, CVSettings("kfold", n_splits=2, workers=2), before_fit=die_in_split_0)
    message = str(caught.value)
    assert isinstance(caught.value, MLFactoryError) and "\n" not in message
    assert message.startswith("cv split 0: its worker process") and "SIGKILL" in message
    assert_failed_cleanly(tmp_path / "cv", "SIGKILL")


class KeywordOnlyError(Exception):
    """Pickles in the worker, cannot be rebuilt in the parent (its __init__ takes no positional argument)."""

    def __init__(self, *, reason: str) -> None:
        super().__init__(reason)


def test_a_result_that_cannot_be_read_back_fails_the_run_in_one_line(sample_dir: Path, tmp_path: Path,
                                                                    cross_validate) -> None:
    def fail_oddly(split_dir: Path) -> None:
        if split_dir.name == "0":
            raise KeywordOnlyError(reason="planted")

    with pytest.raises(WorkerDied) as caught:
        cross_validate(sample_dir, tmp_path, CVSettings("kfold", n_splits=2, workers=2), before_fit=fail_oddly)
    message = str(caught.value)
    assert message.startswith("cv split 0: its result could not be read back") and "\n" not in message
    assert_failed_cleanly(tmp_path / "cv", "could not be read back")


@pytest.mark.parametrize("workers", [1, 2])
def test_on_split_end_can_stop_the_run(workers: int, sample_dir: Path, tmp_path: Path, cross_validate) -> None:
    """As a tuner's pruning does: the hook raises after the first split to finish."""

    class Pruned(Exception):
        pass

    def prune(k: int, entry: dict) -> None:
        raise Pruned(f"pruned after split {k} (balanced accuracy {entry['balanced_accuracy']:.3f})")

    with pytest.raises(Pruned):
        cross_validate(sample_dir, tmp_path, CVSettings("kfold", n_splits=2, workers=workers), on_split_end=prune)
    assert_failed_cleanly(tmp_path / "cv", "pruned after split")
    statuses = split_statuses(tmp_path / "cv")
    assert "complete" in statuses.values() and (workers > 1 or len(statuses) == 1)


@pytest.mark.parametrize(("name", "params", "data"), [
    ("voting", {"members": [{"name": "xgboost", "n_estimators": 20, "max_depth": 2, "n_jobs": 1}, "logistic"]}, {}),
    ("multires", {"encoder": "gru", "hidden_size": 8, "learning_rate": 3e-3}, {"timeframes": ["5min", "1h"],
                                                                               "span": "2h"}),
])
def test_any_registered_model_runs_under_cv(name: str, params: dict, data: dict, sample_dir: Path,
                                            tmp_path: Path, cross_validate) -> None:
    summary, run = cross_validate(sample_dir, tmp_path, CVSettings("kfold", n_splits=2, workers=2), name,
                                  data=data, **params)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert len(predictions) == sum(s["n_samples"] for s in summary["splits"]) > 0
    np.testing.assert_allclose(predictions[PROB_COLUMNS].sum(axis=1), 1, atol=1e-5)
    for k in range(2):
        record = run / "splits" / str(k)
        assert json.loads((record / "status.json").read_text())["status"] == "complete"
        assert json.loads((record / "config" / "model_config.json").read_text())["name"] == name
