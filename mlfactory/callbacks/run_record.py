"""The callback that writes a run's record into the logger's directory (docs/architecture.md)."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from mlfactory.atomic import replacing, write_json
from mlfactory.data.container import class_mapping
from mlfactory.errors import ConfigError
from mlfactory.evaluation import plots
from mlfactory.evaluation.compare import SPLIT_METRICS
from mlfactory.evaluation.importance import feature_importance
from mlfactory.evaluation.report import equity_curve, evaluate_predictions
from mlfactory.inference.bundle import write_bundle
from mlfactory.models.base import predict_batches

# every run, whoever builds the Trainer: <root>/lightning_logs/<model>/<run_id>/ (docs/run_record.md)
LOG_ROOT = "lightning_logs"


def new_run_id() -> str:
    """Sortable and unique even for runs started in the same second: ``20261127-194512-3fa9c1``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


STATUS_FILE = "status.json"
MIN_IMPORTANCE_SECONDS = 5.0
"""The least time the importance budget allows, however short the training (the passes' fixed costs)."""
HPARAM_METRICS = SPLIT_METRICS
"""The validation metrics in TensorBoard's HPARAMS tab, as ``hparams/val_<name>``: where each sits in
``evaluation_metrics.json``'s ``val`` entry (the names ``mlfactory compare`` uses)."""


class RunRecord(Callback):
    """Writes checkpoints' native twin, metrics, predictions, config and the run status.

    Works the same under the CLI and with a plain ``Trainer`` in a notebook: add
    ``RunRecord()`` to the callbacks and ``trainer.log_dir`` receives the whole record. The run is
    marked ``running`` when it starts, ``failed`` (with the error) if anything raises, and
    ``complete`` only after everything else is written, in ``teardown``. Every status carries the
    ``pid`` and ``host`` of the process that wrote it, so a ``running`` run whose process is gone
    (killed, out of memory, power cut) reads as dead (:func:`mlfactory.evaluation.compare.run_state`).

    After ``fit``, the module holds the weights of the best checkpoint, and the record's val and test
    predictions, metrics, plots and feature importance come from that model.

    With Lightning's default logger (a plain ``Trainer``), the run goes where the CLI puts it,
    ``<default_root_dir>/lightning_logs/<model>/<run_id>``, not ``lightning_logs/version_N``; a logger
    the user chose is left alone. TensorBoard's HPARAMS tab gets the run's validation metrics
    (``hparams/val_*``) against the model's init arguments and the data settings that matter.

    Args:
        importance_samples: at most this many validation samples for permutation importance of models
            without a native importance; 0 skips it.
        importance_share: permutation importance may take at most this share of the fit's time
            (``train_seconds``; at least 5 s): its samples are cut to fit, never below 200. ``None``
            lifts the time budget. Its time is reported apart, as ``importance_seconds``.
        plots: draw the figures (plots/*.png and TensorBoard images); the numbers behind them are written
            either way. ``mlfactory cv`` draws its splits' figures only with ``--cv.split_plots``.
    """

    def __init__(self, importance_samples: int = 2000, importance_share: float | None = 0.1,
                 plots: bool = True) -> None:
        if isinstance(importance_samples, bool) or not isinstance(importance_samples, int) or importance_samples < 0:
            raise ConfigError(f"RunRecord: importance_samples={importance_samples!r} must be a whole number >= 0 "
                              "(0 skips permutation importance)")
        if importance_share is not None and not (isinstance(importance_share, (int, float)) and importance_share > 0):
            raise ConfigError(f"RunRecord: importance_share={importance_share!r} must be a positive share of the "
                              "training time (0.1 = a tenth), or None for no time budget")
        self.importance_samples = importance_samples
        self.importance_share = importance_share
        self.plots = plots
        self.run_dir: Path | None = None
        self._failed = False
        self._evaluates_fit = False
        self._started = 0.0
        self._history: list[dict[str, float]] = []
        self._outputs: list[dict[str, torch.Tensor]] = []

    # --- life cycle ----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        _use_run_layout(trainer, pl_module)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # no placeholder `hp_metric = -1`: the real validation metrics are logged at the end of fit
                logger._default_hp_metric = False
        # read log_dir on every rank: under DDP it broadcasts, and reading it on rank 0 alone hangs
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if stage == "fit":
            self._history = []  # before a resumed checkpoint restores it (load_state_dict)
        self._failed = False
        self._started = time.time()
        self._evaluates_fit = self._joins_completed_fit(stage)
        if not self._evaluates_fit:
            self._write_status(trainer, "running", stage=stage)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._failed = True
        if self.run_dir is None and trainer.logger is not None:
            self.run_dir = Path(trainer.log_dir)  # failed before setup, e.g. in the data module's setup
        stage = getattr(trainer.state.fn, "value", "fit")
        if self.run_dir is not None and not self._joins_completed_fit(stage):  # a completed fit stays complete
            self._write_failed(trainer, exception)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._failed and self.run_dir is not None and not self._evaluates_fit:
            self._write_status(trainer, "complete", stage=stage, seconds=round(time.time() - self._started, 3))

    def _joins_completed_fit(self, stage: str) -> bool:
        """Whether a validate/test/predict stage runs in the directory of a completed fit (the same trainer
        after ``fit``): its results join that run, whose status stays the fit's ``complete``."""
        if stage == "fit" or self.run_dir is None:
            return False
        previous = _read_json(self.run_dir / STATUS_FILE)
        return previous.get("status") == "complete" and previous.get("stage") == "fit"

    # --- fit -----------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the epoch's validation, so train and val metrics of the epoch are both here
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
        self._history.append(row)

    def state_dict(self) -> dict[str, Any]:
        # the epoch history survives a crash: a resumed fit continues it instead of starting over
        return {"history": self._history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._history = list(state_dict.get("history", []))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit_seconds = time.time() - self._started  # the training itself; the record and importance come apart
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or ""
        if best_path and not getattr(pl_module, "fits_once", False):  # a fit-once model is its one fit already
            state = torch.load(best_path, map_location=pl_module.device, weights_only=True)
            pl_module.load_state_dict(state["state_dict"])
        if not trainer.is_global_zero:
            return
        # rank 0 predicts whole splits with the data module's own loaders (no distributed sampler),
        # so the record holds every sample, not one rank's shard; no collective call is made here
        datamodule = trainer.datamodule
        evaluation = {
            split: self._save_predictions(trainer, split, predict_batches(pl_module, loader))
            for split, loader in (("val", datamodule.val_dataloader()), ("test", datamodule.test_dataloader()))
        }
        pl_module.export_native(self.run_dir / "checkpoints" / "best_model")
        importance = self._write_importance(trainer, pl_module, fit_seconds)
        write_json(self.run_dir / "metrics" / "evaluation_metrics.json", evaluation)
        importance_seconds = importance["seconds"] if importance else 0.0
        timing = {"train_seconds": fit_seconds, "importance_seconds": importance_seconds,
                  "record_seconds": time.time() - self._started - fit_seconds - importance_seconds}
        write_json(self.run_dir / "metrics" / "training_metrics.json",
                   self._training_metrics(trainer, pl_module, best_path, timing, importance))
        self._write_config(trainer, pl_module)
        write_bundle(pl_module, datamodule, self.run_dir)  # bundle/: self-contained inference (docs/inference.md)
        self._log_hparams(trainer, pl_module, evaluation["val"])

    # --- validate / test / predict on their own ------------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs = []

    on_test_epoch_start = on_predict_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "validate" and outputs is not None:
            self._outputs.append(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._outputs.append(outputs)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._outputs.append({k: v.detach().cpu() for k, v in outputs.items()})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._finish_evaluation(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish_evaluation(trainer, pl_module, "test")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish_evaluation(trainer, pl_module, trainer.datamodule.predict_split, predict=True)

    # --- writers -------------------------------------------------------------------------------
    def _finish_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str, predict: bool = False) -> None:
        if not trainer.is_global_zero:
            return
        if trainer.world_size == 1:
            outputs = _concat(self._outputs)
        else:  # the collected outputs are this rank's shard: predict the whole split on rank 0
            outputs = predict_batches(pl_module, trainer.datamodule.eval_loader(split))
        if predict:
            self._save_predictions(trainer, f"predict_{split}", outputs, with_metrics=False)
        else:
            metrics = self._save_predictions(trainer, split, outputs)
            path = self.run_dir / "metrics" / "evaluation_metrics.json"
            write_json(path, {**_read_json(path), split: metrics})  # beside the fit's other split, if any
        self._write_config(trainer, pl_module)

    def _save_predictions(
        self, trainer: L.Trainer, name: str, outputs: dict[str, torch.Tensor], with_metrics: bool = True
    ) -> dict[str, float]:
        """Write ``predictions/{name}_predictions.npz`` (and the split's plots); return its metrics. Rank 0 only."""
        datamodule = trainer.datamodule
        split_name = name.removeprefix("predict_")
        split = datamodule.container.split(split_name)
        rows = outputs["row"].numpy()
        probs = outputs["probs"].float().numpy()
        labels = split.labels[rows]
        calendar = datamodule.container.splits.values()  # all splits: the market's calendar for the Sharpe ratio
        metrics = evaluate_predictions(split, rows, probs, datamodule.horizon, calendar) if with_metrics else {}
        if with_metrics:
            equity = None
            if split.fwd_returns is not None:
                equity = equity_curve(probs, split.fwd_returns[rows], split.timestamps[rows], datamodule.horizon)
            self._write_plots(trainer, split_name, metrics, equity)
        identity = split.identity(rows)
        path = self.run_dir / "predictions" / f"{name}_predictions.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        # a file object: numpy adds no .npz to the temporary's name
        with replacing(path) as tmp, open(tmp, "wb") as file:
            np.savez(
                file,
                probabilities=probs,
                predicted_class=probs.argmax(axis=1),
                confidence=probs.max(axis=1),
                label=labels,
                row=rows,
                datetime=split.timestamps[rows],
                symbol=identity["symbol"].to_numpy().astype(str),
                class_mapping=np.array(json.dumps(class_mapping())),
            )
        return metrics

    def _write_plots(self, trainer: L.Trainer, split: str, metrics: dict, equity: Any = None) -> None:
        """PNG files in plots/, and the same figures in TensorBoard's images tab; titles name the run."""
        if not self.plots:
            return
        label = self._run_label(trainer)
        figures = {
            f"confusion_{split}": lambda: plots.confusion_figure(metrics["confusion_matrix"],
                                                                 f"{split} confusion\n{label}"),
            f"reliability_{split}": lambda: plots.reliability_figure(metrics["calibration"],
                                                                     f"{split} reliability\n{label}"),
        }
        if equity is not None and len(equity):
            sharpe = metrics.get("trading", {}).get("sharpe_annualised", float("nan"))
            figures[f"equity_{split}"] = lambda: plots.equity_figure(
                equity, f"{split} equity curve, Sharpe {sharpe:.2f} (annualised)\n{label}")
        for name, build in figures.items():
            self._save_figure(trainer, name, build())

    def _save_figure(self, trainer: L.Trainer, name: str, figure: Any) -> None:
        """``plots/<name>.png`` and the image ``<name>`` in TensorBoard (when the logger is TensorBoard's)."""
        image = plots.render(figure)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(name, image, global_step=trainer.global_step, dataformats="HWC")
        plots.write_png(image, self.run_dir / "plots" / f"{name}.png")

    def _run_label(self, trainer: L.Trainer) -> str:
        module = trainer.lightning_module
        model = getattr(module, "registry_name", "") or type(module).__name__
        return plots.run_label(model, self.run_dir.name, trainer.datamodule.horizon)

    def _write_importance(self, trainer: L.Trainer, pl_module: L.LightningModule,
                          fit_seconds: float) -> dict[str, Any] | None:
        """importance/feature_importance.csv and its plot; ``{"method", "samples", "seconds"}``, or None."""
        started = time.time()
        budget = None if self.importance_share is None else max(MIN_IMPORTANCE_SECONDS,
                                                                 self.importance_share * fit_seconds)
        result = feature_importance(pl_module, trainer.datamodule, self.importance_samples,
                                    seconds=budget, progress=_shows_progress(trainer))
        if result is None:
            return None
        import pandas as pd

        table = pd.DataFrame({"feature": result["features"], "importance": result["importance"]})
        table["method"] = result["method"]
        path = self.run_dir / "importance" / "feature_importance.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.sort_values("importance", ascending=False).to_csv(path, index=False)
        samples = "" if result["samples"] is None else f", {result['samples']} val samples"  # the method: x label
        if self.plots:
            figure = plots.importance_figure(result["features"], np.asarray(result["importance"]), result["method"],
                                             f"feature importance{samples}\n{self._run_label(trainer)}")
            self._save_figure(trainer, "feature_importance", figure)
        return {"method": result["method"], "samples": result["samples"], "budget_seconds": budget,
                "seconds": time.time() - started}

    def _training_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule, best_path: str,
                          timing: dict[str, float], importance: dict[str, Any] | None) -> dict[str, Any]:
        checkpoint = trainer.checkpoint_callback
        early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
        best_score = getattr(checkpoint, "best_model_score", None)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        # a fit-once model says what its library did (rounds, best iteration, early stop); Lightning's
        # EarlyStopping never fires for it, since its one fit is the whole training
        fit_summary = dict(getattr(pl_module, "fit_summary_", None) or {})
        lightning_stopped = bool(early is not None and early.stopped_epoch > 0)
        return {
            "epochs": trainer.current_epoch,
            "global_steps": trainer.global_step,
            **{name: round(seconds, 3) for name, seconds in timing.items()},
            "monitor": getattr(checkpoint, "monitor", None),
            "best_score": float(best_score) if best_score is not None else None,
            "best_checkpoint": os.path.relpath(best_path, self.run_dir) if best_path else None,
            "best_epoch": None if getattr(pl_module, "fits_once", False) else self._best_epoch(checkpoint),
            "best_iteration": fit_summary.get("best_iteration"),
            "early_stopped": bool(fit_summary.get("early_stopped", lightning_stopped)),
            "stopped_epoch": early.stopped_epoch if early is not None else None,
            "fit_summary": fit_summary,
            "importance": importance,
            "final": final,
            "history": self._history,
            "rounds": getattr(pl_module, "history_", {}),
        }

    def _best_epoch(self, checkpoint: Any) -> int | None:
        """The epoch whose ``monitor`` value is the best checkpoint's (from the epoch history)."""
        monitor, mode = getattr(checkpoint, "monitor", None), getattr(checkpoint, "mode", "min")
        scored = [row for row in self._history if monitor and math.isfinite(row.get(monitor, math.nan))]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return int(pick(scored, key=lambda row: row[monitor])["epoch"])

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule, val: dict) -> None:
        """TensorBoard's HPARAMS tab: the run's validation metrics against its meaningful settings.

        Settings: ``model`` (the registry name), ``model.<init argument>`` and ``data.<setting>`` for
        the data settings that change what this model learns (:func:`_learning_data_settings`; paths,
        workers and threads do not). Metrics: ``hparams/val_<name>`` (:data:`HPARAM_METRICS`). The loggers' ``hparams``
        (hparams.yaml) keep what Lightning stored at the start.
        """
        params: dict[str, Any] = {"model": getattr(pl_module, "registry_name", "") or type(pl_module).__name__}
        hyperparameters = pl_module.hyperparameters() if hasattr(pl_module, "hyperparameters") else {}
        params.update({f"model.{k}": _hparam_value(v) for k, v in hyperparameters.items()})
        data = dict(getattr(trainer.datamodule, "hparams", {}))
        params.update({f"data.{k}": _hparam_value(data[k]) for k in _learning_data_settings(pl_module) if k in data})
        metrics = {}
        for name, keys in HPARAM_METRICS.items():
            value: Any = val
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics[f"hparams/val_{name}"] = float(value)
        for logger in trainer.loggers:
            kept = dict(logger.hparams) if isinstance(getattr(logger, "hparams", None), dict) else None
            logger.log_hyperparams(params, metrics)
            if kept is not None:
                logger.hparams = kept

    def _write_config(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module_type = type(pl_module)
        write_json(
            self.run_dir / "config" / "model_config.json",
            {
                "name": getattr(pl_module, "registry_name", ""),
                "class_path": f"{module_type.__module__}.{module_type.__qualname__}",
                "family": getattr(pl_module, "family", ""),
                "input_kind": getattr(pl_module, "input_kind", ""),
                "init_args": pl_module.hyperparameters() if hasattr(pl_module, "hyperparameters") else {},
            },
        )
        datamodule = trainer.datamodule
        container = getattr(datamodule, "container", None)
        write_json(
            self.run_dir / "config" / "training_config.json",
            {
                "data": {k: v for k, v in dict(getattr(datamodule, "hparams", {})).items()},
                "data_fingerprint": container.fingerprint() if container is not None else None,
                "features": container.feature_names if container is not None else None,
                "class_mapping": class_mapping(),
                "trainer": _trainer_settings(trainer),
            },
        )

    @rank_zero_only
    def _write_status(self, trainer: L.Trainer, status: str, **details: Any) -> None:
        write_json(self.run_dir / STATUS_FILE, self._status_record(status, **details))

    @rank_zero_only
    def _write_failed(self, trainer: L.Trainer, exception: BaseException) -> None:
        """Mark the run ``failed`` even on a full disk; never raise over the exception being handled.

        The atomic write needs room for a second file. When there is none (ENOSPC), the small record
        without the traceback is written over ``status.json`` in place: truncating it frees the space
        the new text needs. If even that fails, ``status.json`` keeps ``running`` with this process's
        pid, which reads as dead once the process has exited.
        """
        error = f"{type(exception).__name__}: {exception}"
        path = self.run_dir / STATUS_FILE
        try:
            write_json(path, self._status_record("failed", error=error,
                                                 traceback="".join(traceback.format_exception(exception))))
        except OSError:
            try:
                path.write_text(json.dumps(self._status_record("failed", error=error)))
            except OSError:
                pass

    def _status_record(self, status: str, **details: Any) -> dict[str, Any]:
        """The status with its writer's pid and host, keeping ``created`` from the previous record."""
        try:
            previous = json.loads((self.run_dir / STATUS_FILE).read_text())
        except (OSError, ValueError):  # none yet, or damaged: start afresh
            previous = {}
        created = previous.get("created") if isinstance(previous, dict) else None
        return {
            "status": status,
            "created": created or _now(),
            "updated": _now(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **details,
        }


def _use_run_layout(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Give a trainer with Lightning's default logger the CLI's run layout, ``lightning_logs/<model>/<run_id>``.

    The default logger has already made its ``lightning_logs/version_N`` folder (Lightning creates the
    experiment before the ``setup`` hooks); that folder holds nothing but its own empty event file and
    is removed. A logger the user passed, and this trainer's later runs, are left alone.
    """
    logger = trainer.logger
    if len(trainer.loggers) != 1 or not _is_default_logger(trainer, logger):
        return
    name = getattr(pl_module, "registry_name", "") or type(pl_module).__name__.lower()
    run_id = trainer.strategy.broadcast(new_run_id())  # one directory for every rank
    trainer.loggers = [TensorBoardLogger(save_dir=str(Path(trainer.default_root_dir) / LOG_ROOT), name=name,
                                         version=run_id, default_hp_metric=False)]
    _remove_empty_run(logger)


def _is_default_logger(trainer: L.Trainer, logger: Any) -> bool:
    """Whether ``logger`` is the one ``Trainer(logger=True)`` makes: TensorBoard's, ``<root>/lightning_logs``."""
    return (
        type(logger) is TensorBoardLogger
        and logger.name == "lightning_logs"
        and Path(logger.save_dir).resolve() == Path(trainer.default_root_dir).resolve()
    )


@rank_zero_only
def _remove_empty_run(logger: TensorBoardLogger) -> None:
    """Close the default logger's writer and delete its folder if it holds only event files without records."""
    experiment = logger.experiment
    experiment.close()
    folder = Path(logger.log_dir)
    files = list(folder.iterdir()) if folder.is_dir() else []
    # an event file with only its header is a few dozen bytes; anything larger holds records someone wrote
    if all(f.is_file() and f.name.startswith("events.out.tfevents.") and f.stat().st_size < 1024 for f in files):
        shutil.rmtree(folder, ignore_errors=True)


def _shows_progress(trainer: L.Trainer) -> bool:
    """Whether the trainer shows progress bars (``enable_progress_bar``)."""
    bar = trainer.progress_bar_callback
    return bar is not None and bar.is_enabled


def _learning_data_settings(pl_module: L.LightningModule) -> tuple[str, ...]:
    """The data settings that change what ``pl_module`` learns: the horizon always; windows and batches
    for the inputs and training that use them."""
    kind = getattr(pl_module, "input_kind", "tabular")
    names = ["horizon", "balance_classes"]
    if kind == "sequence":
        names.append("seq_len")
    if kind == "multires":
        names += ["timeframes", "lookback", "span"]
    if not getattr(pl_module, "fits_once", False):
        names.append("batch_size")
    return tuple(names)


def _hparam_value(value: Any) -> Any:
    """A value TensorBoard's HPARAMS tab shows: numbers and strings as they are, the rest as text
    (``True``, ``None``, ``["xgboost", "lstm"]``; TensorBoard would show a boolean as 1)."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _concat(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = ("row", "probs", "y")
    return {k: torch.cat([o[k].detach().cpu() for o in outputs]) for k in keys}


def _trainer_settings(trainer: L.Trainer) -> dict[str, Any]:
    return {
        "max_epochs": trainer.max_epochs,
        "min_epochs": trainer.min_epochs,
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
        "world_size": trainer.world_size,
        "precision": trainer.precision,
        "gradient_clip_val": trainer.gradient_clip_val,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "callbacks": [type(c).__name__ for c in trainer.callbacks],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
