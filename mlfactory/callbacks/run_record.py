"""The callback that writes a run's record into the logger's directory (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from mlfactory.atomic import replacing, write_json
from mlfactory.data.container import class_mapping
from mlfactory.evaluation import plots
from mlfactory.evaluation.importance import feature_importance
from mlfactory.evaluation.report import evaluate_predictions
from mlfactory.inference.bundle import write_bundle
from mlfactory.models.base import predict_batches

STATUS_FILE = "status.json"


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

    Args:
        importance_samples: validation samples used for permutation importance of models without a
            native importance; 0 skips it.
    """

    def __init__(self, importance_samples: int = 2000) -> None:
        self.importance_samples = importance_samples
        self.run_dir: Path | None = None
        self._failed = False
        self._started = 0.0
        self._history: list[dict[str, float]] = []
        self._outputs: list[dict[str, torch.Tensor]] = []

    # --- life cycle ----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # read log_dir on every rank: under DDP it broadcasts, and reading it on rank 0 alone hangs
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if stage == "fit":
            self._history = []  # before a resumed checkpoint restores it (load_state_dict)
        self._failed = False
        self._started = time.time()
        self._write_status(trainer, "running", stage=stage)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._failed = True
        if self.run_dir is None and trainer.logger is not None:
            self.run_dir = Path(trainer.log_dir)  # failed before setup, e.g. in the data module's setup
        if self.run_dir is not None:
            self._write_failed(trainer, exception)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._failed and self.run_dir is not None:
            self._write_status(trainer, "complete", stage=stage, seconds=round(time.time() - self._started, 3))

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
        self._write_importance(trainer, pl_module)
        write_json(self.run_dir / "metrics" / "evaluation_metrics.json", evaluation)
        write_json(self.run_dir / "metrics" / "training_metrics.json", self._training_metrics(trainer, best_path))
        self._write_config(trainer, pl_module)
        write_bundle(pl_module, datamodule, self.run_dir)  # bundle/: self-contained inference (docs/inference.md)

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
            write_json(self.run_dir / "metrics" / "evaluation_metrics.json", {split: metrics})
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
            self._write_plots(trainer, split_name, metrics)
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

    def _write_plots(self, trainer: L.Trainer, split: str, metrics: dict) -> None:
        """PNG files in plots/, and the same figures in TensorBoard's images tab."""
        figures = {
            f"confusion_{split}": plots.confusion_figure(metrics["confusion_matrix"], f"{split} confusion"),
            f"reliability_{split}": plots.reliability_figure(metrics["calibration"], f"{split} reliability"),
        }
        for name, figure in figures.items():
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_figure"):
                experiment.add_figure(name, figure, global_step=trainer.global_step, close=False)
            plots.save(figure, self.run_dir / "plots" / f"{name}.png")

    def _write_importance(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = feature_importance(pl_module, trainer.datamodule, self.importance_samples)
        if result is None:
            return
        import pandas as pd

        table = pd.DataFrame({"feature": result["features"], "importance": result["importance"]})
        table["method"] = result["method"]
        path = self.run_dir / "importance" / "feature_importance.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.sort_values("importance", ascending=False).to_csv(path, index=False)
        figure = plots.importance_figure(result["features"], np.asarray(result["importance"]), result["method"])
        plots.save(figure, self.run_dir / "plots" / "feature_importance.png")

    def _training_metrics(self, trainer: L.Trainer, best_path: str) -> dict[str, Any]:
        checkpoint = trainer.checkpoint_callback
        early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
        best_score = getattr(checkpoint, "best_model_score", None)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        return {
            "epochs": trainer.current_epoch,
            "global_steps": trainer.global_step,
            "train_seconds": round(time.time() - self._started, 3),
            "monitor": getattr(checkpoint, "monitor", None),
            "best_score": float(best_score) if best_score is not None else None,
            "best_checkpoint": os.path.relpath(best_path, self.run_dir) if best_path else None,
            "early_stopped": bool(early is not None and early.stopped_epoch > 0),
            "stopped_epoch": early.stopped_epoch if early is not None else None,
            "final": final,
            "history": self._history,
            "rounds": getattr(trainer.lightning_module, "history_", {}),
        }

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
