"""What every registered model shares: the input contract, metrics, evaluation and prediction steps."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, ClassVar, Iterable

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from mlfactory.errors import ModelError
from mlfactory.metrics import classification_metrics

Batch = dict[str, Any]
"""``{"x": tensor or {timeframe: tensor}, "y": classes, "w": weights, "row": split rows}`` (data/windows.py)."""


def predict_batches(module: L.LightningModule, loader: Iterable[Batch]) -> dict[str, torch.Tensor]:
    """``predict_step`` over a loader outside Lightning's loops: rows, probabilities and labels, on CPU.

    Used after fit (on the best model) and for permutation importance; the module's mode is restored.
    """
    was_training = module.training
    module.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    with torch.inference_mode():
        for batch in loader:
            batch = move_data_to_device(batch, module.device)  # x may be a dict of tensors (multires)
            outputs.append({k: v.detach().cpu() for k, v in module.predict_step(batch, 0).items()})
    module.train(was_training)
    return {k: torch.cat([o[k] for o in outputs]) for k in ("row", "probs", "y")}


class FactoryModule(L.LightningModule):
    """Base of every model. Subclasses supply :meth:`loss_and_probs`; the rest is shared.

    ``registry_name``, ``family`` and ``input_kind`` are set by ``@register``. ``param_ranges`` maps a
    numeric hyper-parameter to its closed ``(low, high)`` range (``None`` = unbounded), checked in
    ``setup`` (before the optimizer or estimator is built) so the error names the parameter, the
    model, the range and the value; ``Literal`` choices in the signature are checked there too.
    """

    registry_name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    input_kind: ClassVar[str] = "tabular"
    param_ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.train_metrics = classification_metrics("train_")
        self.val_metrics = classification_metrics("val_")
        self.test_metrics = classification_metrics("test_")

    def loss_and_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample-weighted loss of a batch and its (batch, 3) class probabilities."""
        raise NotImplementedError

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """Class probabilities of a batch, shape (batch, 3)."""
        return self.loss_and_probs(batch)[1]

    def export_native(self, directory: Path) -> None:
        """Write the model in its own library's format into ``directory`` (the run's best_model/)."""
        raise NotImplementedError

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"row": batch["row"], "probs": self.predict_proba(batch), "y": batch["y"]}

    def setup(self, stage: str) -> None:
        self.check_params()

    def check_params(self) -> None:
        """Refuse hyper-parameters outside ``param_ranges`` or outside the choices of a ``Literal`` hint."""
        for name, hint in typing.get_type_hints(type(self).__init__).items():
            value = self.hparams.get(name)
            if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
                raise ModelError(
                    f"{type(self).__name__} ({self.registry_name}): {name}={value!r} is not one of "
                    f"{list(typing.get_args(hint))}"
                )
        for name, (low, high) in self.param_ranges.items():
            value = self.hparams.get(name)
            if value is None:
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise ModelError(
                    f"{type(self).__name__} ({self.registry_name}): {name}={value!r} is outside {bounds}; "
                    f"pass --model.{name} with a value in that range"
                )

    def log_metrics(self, stage: str, loss: torch.Tensor, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Log ``{stage}_loss`` and the stage's metric collection as epoch means."""
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs, target)
        batch_size = len(target)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=stage != "train")  # epoch values agree across DDP ranks; metrics sync themselves
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)

    def _evaluate(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        loss, probs = self.loss_and_probs(batch)
        self.log_metrics(stage, loss, probs, batch["y"])
        return {"loss": loss, "row": batch["row"], "probs": probs.detach(), "y": batch["y"]}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # which model wrote it, so `validate/test/predict --ckpt_path` need no --model
        from mlfactory.version import __version__

        module_type = type(self)
        checkpoint["mlfactory"] = {
            "model": self.registry_name,
            "class_path": f"{module_type.__module__}.{module_type.__qualname__}",
            "version": __version__,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """Init arguments as plain values, without Lightning's internal keys."""
        return {k: v for k, v in dict(self.hparams).items() if not k.startswith("_")}

    def _require(self, condition: bool, message: str) -> None:
        if not condition:
            raise ModelError(f"{type(self).__name__} ({self.registry_name}): {message}")
