"""Per-round pruning through each boosting library's own callback, per-epoch pruning through Lightning's."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfactory.tuning.pruning import RoundReporter, attach_round_pruning, epoch_callbacks


def _losing_trial():
    """A trial of a study whose two finished trials reached a loss of 0.01 at every step: any real fit trails them."""
    import optuna

    study = optuna.create_study(direction="minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.01, params={}, distributions={},
                                                  intermediate_values={step: 0.01 for step in range(1001)}))
    return study.ask()


def _fit(model, sample_dir: Path, callbacks=()):
    import lightning as L

    from mlfactory import FactoryDataModule

    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=list(callbacks))
    trainer.fit(model, datamodule=FactoryDataModule(data_dir=str(sample_dir), horizon=5, seq_len=8, threads=1))
    return trainer


@pytest.mark.parametrize("name", ["lightgbm", "xgboost", "catboost"])
def test_a_boosting_trial_is_pruned_by_its_library_callback(name: str, sample_dir: Path) -> None:
    import optuna

    from mlfactory import create_model

    trial = _losing_trial()
    model = create_model(name, n_estimators=50, n_jobs=1)
    reporter = RoundReporter(trial, sign=1.0, every=5)
    assert attach_round_pruning(model, reporter)
    with pytest.raises(optuna.TrialPruned, match="pruned at boosting round 5"):
        _fit(model, sample_dir)
    assert reporter.pruned_at == 5 and list(trial.study.trials[-1].intermediate_values) == [5]


def test_an_unpruned_boosting_fit_reports_every_few_rounds(sample_dir: Path) -> None:
    import optuna

    from mlfactory import create_model

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    model = create_model("lightgbm", n_estimators=12, early_stopping_rounds=None, n_jobs=1)
    attach_round_pruning(model, RoundReporter(trial, sign=-1.0, every=5))
    _fit(model, sample_dir)
    values = study.trials[-1].intermediate_values
    assert list(values) == [5, 10] and all(v < 0 for v in values.values())  # the loss, negated for a maximiser


def test_a_neural_trial_is_pruned_per_epoch(sample_dir: Path) -> None:
    import optuna

    from mlfactory import create_model

    trial = _losing_trial()
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        _fit(create_model("lstm", hidden_size=8, num_layers=1), sample_dir, epoch_callbacks(trial, "log_loss", 1.0))
    assert list(trial.study.trials[-1].intermediate_values) == [0]


def test_a_maximised_metric_without_epoch_logs_prunes_on_the_negated_loss(sample_dir: Path) -> None:
    import optuna

    from mlfactory import create_model

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    _fit(create_model("lstm", hidden_size=8, num_layers=1), sample_dir, epoch_callbacks(trial, "sharpe", -1.0))
    values = study.trials[-1].intermediate_values
    assert sorted(values) == [0, 1, 2] and all(-2.0 < v < 0 for v in values.values())
