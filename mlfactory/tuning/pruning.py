"""Pruning: stop a trial early when its intermediate results trail the study's (docs/tuning.md).

- neural fits, per epoch: optuna-integration's ``PyTorchLightningPruningCallback`` on the trainer;
- boosting fits, per round: a callback of the library's own (LightGBM, XGBoost, CatBoost) that reports
  the round's validation log loss every ``report_every`` rounds and stops the library when pruned;
- cross-validation trials, per completed split: the running mean of the splits' test metric.

Epochs and rounds report the fit's own validation loss, which every model has; a study that maximises
(balanced accuracy, direction AUC, Sharpe) receives it negated, so larger is better in the pruner too.
Balanced accuracy is reported per epoch as it is (``val_balanced_accuracy``). A pruned trial raises
``optuna.TrialPruned``; the study records it as pruned, not failed.
"""

from __future__ import annotations

from typing import Any

EPOCH_MONITOR = {"log_loss": "val_loss", "balanced_accuracy": "val_balanced_accuracy"}
SIGNED_LOSS = "tune_signed_val_loss"


class RoundReporter:
    """Reports a boosting fit's validation loss to a trial every ``every`` rounds; remembers where it was pruned."""

    def __init__(self, trial: Any, sign: float, every: int) -> None:
        self.trial, self.sign, self.every = trial, sign, max(1, every)
        self.pruned_at: int | None = None

    def report(self, round_: int, loss: float) -> bool:
        """Report round ``round_``'s loss; True when the trial should stop here."""
        if (round_ + 1) % self.every:
            return False
        self.trial.report(self.sign * float(loss), round_ + 1)
        if self.trial.should_prune():
            self.pruned_at = round_ + 1
            return True
        return False


def attach_round_pruning(model: Any, reporter: RoundReporter) -> bool:
    """Make a boosting model's library report each round to ``reporter``; False if the model is no booster here.

    Wraps the model instance's ``fit_estimator`` (the model's class and its checkpoint are untouched):
    the library's estimator gets the reporting callback before it fits, and a pruned fit raises
    ``optuna.TrialPruned`` once the library has stopped.
    """
    hook = _HOOKS.get(getattr(model, "library", ""))
    if hook is None or not hasattr(model, "fit_estimator"):
        return False
    original = model.fit_estimator

    def fit_estimator(estimator: Any, train: Any, val: Any) -> Any:
        import optuna

        hook(estimator, reporter)
        history = original(estimator, train, val)
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at boosting round {reporter.pruned_at}")
        return history

    model.fit_estimator = fit_estimator
    return True


def _lightgbm(estimator: Any, reporter: RoundReporter) -> None:
    import lightgbm

    def report(env: Any) -> None:
        for data_name, _metric, value, *_ in env.evaluation_result_list:
            if data_name == "val" and reporter.report(env.iteration - env.begin_iteration, value):
                raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    fit = estimator.fit

    def fit_reporting(*args: Any, callbacks: list | None = None, **kwargs: Any) -> Any:
        return fit(*args, callbacks=[*(callbacks or []), report], **kwargs)

    estimator.fit = fit_reporting


def _xgboost(estimator: Any, reporter: RoundReporter) -> None:
    import xgboost

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            curves = evals_log.get("validation_1") or {}
            values = next(iter(curves.values()), None)
            return bool(values) and reporter.report(epoch, values[-1])

    fit = estimator.fit

    def fit_reporting(*args: Any, **kwargs: Any) -> Any:
        # xgboost takes callbacks as a parameter; the model may set its own just before it fits
        estimator.set_params(callbacks=[*(estimator.get_params().get("callbacks") or []), Report()])
        return fit(*args, **kwargs)

    estimator.fit = fit_reporting


def _catboost(estimator: Any, reporter: RoundReporter) -> None:
    class Report:
        def after_iteration(self, info: Any) -> bool:  # CatBoost: True continues
            curves = info.metrics.get("validation") or {}
            values = next(iter(curves.values()), None)
            return not (values and reporter.report(info.iteration - 1, values[-1]))

    fit = estimator.fit

    def fit_reporting(*args: Any, **kwargs: Any) -> Any:
        return fit(*args, callbacks=[*(kwargs.pop("callbacks", None) or []), Report()], **kwargs)

    estimator.fit = fit_reporting


_HOOKS = {"lightgbm": _lightgbm, "xgboost": _xgboost, "catboost": _catboost}


def epoch_callbacks(trial: Any, metric: str, sign: float) -> list[Any]:
    """Lightning callbacks that report each epoch's validation result to ``trial`` and prune.

    optuna-integration's ``PyTorchLightningPruningCallback`` watches ``val_loss`` (log loss) or
    ``val_balanced_accuracy``; for the other metrics it watches the validation loss, negated when the
    study maximises (a small callback before it puts that value among the trainer's metrics).
    """
    from lightning.pytorch.callbacks import Callback
    from optuna_integration import PyTorchLightningPruningCallback

    monitor = EPOCH_MONITOR.get(metric)
    if monitor is not None:
        return [PyTorchLightningPruningCallback(trial, monitor=monitor)]

    class SignedLoss(Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            loss = trainer.callback_metrics.get("val_loss")
            if loss is not None:
                trainer.callback_metrics[SIGNED_LOSS] = loss * sign

    return [SignedLoss(), PyTorchLightningPruningCallback(trial, monitor=SIGNED_LOSS)]
