"""The thread setting (FactoryDataModule(threads=...), --data.threads), the plateau scheduler's
patience and floor, and the samples/s of the neural progress bar."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch

from mlfactory import FactoryDataModule, create_model
from mlfactory.errors import DataError

TINY_LSTM = {"hidden_size": 4, "num_layers": 1}


@pytest.fixture
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def bare_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


class _ThreadsSeen(L.Callback):
    """torch's intra-op thread count at every training batch."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(torch.get_num_threads())


def test_threads_reach_torch_inside_a_fit(sample_dir, restore_threads):
    torch.set_num_threads(3)
    seen = _ThreadsSeen()
    trainer = bare_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[seen])
    trainer.fit(create_model("lstm", **TINY_LSTM),
                datamodule=FactoryDataModule(data_dir=str(sample_dir), seq_len=8, threads=1))
    assert seen.seen == [1, 1]


def test_unset_threads_leave_torch_alone(sample_dir, restore_threads):
    torch.set_num_threads(3)
    seen = _ThreadsSeen()
    trainer = bare_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, callbacks=[seen])
    trainer.fit(create_model("lstm", **TINY_LSTM), datamodule=FactoryDataModule(data_dir=str(sample_dir), seq_len=8))
    assert seen.seen == [3]


@pytest.mark.parametrize(("n_jobs", "expected"), [(None, 1), (2, 2)])
def test_a_booster_follows_threads_unless_n_jobs_is_set(sample_dir, restore_threads, n_jobs, expected):
    model = create_model("xgboost", n_estimators=3, early_stopping_rounds=None, n_jobs=n_jobs)
    bare_trainer(max_epochs=1).fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir), threads=1))
    assert model.estimator_.get_params()["n_jobs"] == expected


def test_an_sklearn_estimators_every_core_follows_threads(sample_dir, restore_threads):
    model = create_model("random_forest", n_estimators=3)  # n_jobs=-1 (every core) by default
    model.trainer = bare_trainer(max_epochs=1)
    model.trainer.datamodule = FactoryDataModule(data_dir=str(sample_dir), threads=1)
    assert model.build_estimator().get_params()["n_jobs"] == 1


@pytest.mark.parametrize("threads", [0, -2, 1.5, True])
def test_threads_must_be_a_positive_whole_number(threads):
    with pytest.raises(DataError, match="threads="):
        FactoryDataModule(threads=threads)


def test_the_plateau_scheduler_gets_patience_and_floor():
    model = create_model("lstm", n_features=3, plateau_patience=7, min_lr=1e-5, **TINY_LSTM)
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.patience == 7 and scheduler.min_lrs == [1e-5]


def test_the_scheduler_defaults_are_the_former_behaviour():
    scheduler = create_model("lstm", n_features=3, **TINY_LSTM).configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.patience == 2 and scheduler.factor == 0.5 and scheduler.min_lrs == [0.0]


def test_the_progress_bar_shows_samples_per_second(sample_dir, restore_threads):
    torch.set_num_threads(1)
    trainer = bare_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    started = time.perf_counter()
    trainer.fit(create_model("lstm", **TINY_LSTM),
                datamodule=FactoryDataModule(data_dir=str(sample_dir), seq_len=8, batch_size=32))
    fit_seconds = time.perf_counter() - started
    rate = trainer.progress_bar_metrics["samples/s"]
    # 3 batches of 32 samples, timed from the epoch's start: at least 96 samples per fit's wall time
    assert 96 / fit_seconds <= rate < float("inf")
