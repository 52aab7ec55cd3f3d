"""Ensemble members: build them from registry names, fit them on rows of a split, predict rows.

Every member sees its own view of the same samples: a sample is the row of its last bar, a tabular
member reads that row, a sequence member reads the window ending at it. So members of different
families line up row by row, and an ensemble can mix them. A member is fitted like any model: an
ordinary ``Trainer`` on the data module restricted to the ensemble's rows
(:meth:`~mlfactory.data.datamodule.FactoryDataModule.restricted`), on the accelerator the ensemble's
own trainer uses.
"""

from __future__ import annotations

import contextvars
from typing import Any, Union

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader

from mlfactory.data.split import SplitData
from mlfactory.data.views import InputView
from mlfactory.data.windows import collate_batch
from mlfactory.errors import EnsembleCompatibilityError, ModelError, RegistryError
from mlfactory.models.base import FactoryModule
from mlfactory.registry import model_class

# a registry name, or {"name": <registry name>, <hyper-parameter>: <value>, ...}
MemberSpec = Union[str, dict[str, Any]]


def build_member(spec: MemberSpec, index: int) -> FactoryModule:
    """A new, unfitted member from its spec; every way a spec can be wrong is an EnsembleCompatibilityError."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise EnsembleCompatibilityError(
            f"member {index} is {spec!r}; give a registry name or a mapping with a 'name' key, "
            "e.g. [xgboost, {name: lstm, hidden_size: 32}]"
        )
    try:
        cls = model_class(name)
    except RegistryError as err:
        raise EnsembleCompatibilityError(f"member {index}: {err}") from None
    if cls.family == "ensemble":
        raise EnsembleCompatibilityError(f"member {index} ({name}) is itself an ensemble; nest members instead")
    if not InputView.of(cls.input_kind).reads_feature_columns:
        raise EnsembleCompatibilityError(f"member {index} ({name}) reads {cls.input_kind!r} input, not rows or windows")
    try:
        # an empty context: inside LightningCLI's instantiation of the ensemble, Lightning's context
        # variable would otherwise hand the ensemble's hyper-parameters to the member's save_hyperparameters
        member = contextvars.Context().run(cls, **params)
    except TypeError as err:
        raise EnsembleCompatibilityError(f"member {index} ({name}) is misconfigured: {err}") from None
    try:
        member.check_params()
    except ModelError as err:
        raise EnsembleCompatibilityError(f"member {index} ({name}) is misconfigured: {err}") from None
    return member


def fit_member(
    member: FactoryModule,
    datamodule: Any,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    neural_max_epochs: int,
    neural_patience: int,
    trainer: L.Trainer | None = None,
) -> None:
    """Fit ``member`` on ``train_rows`` of the train split, early-stopping on ``val_rows`` of val.

    An ordinary ``Trainer`` fits it on ``datamodule.restricted(train=..., val=...)``, on the device
    of ``trainer`` (the ensemble's), keeping the weights of the epoch with the lowest val_loss. The
    class-balance factors of ``datamodule`` are kept as they are, so a member learns what it would
    have learned before the primitive existed.
    """
    rows = datamodule.restricted(train=train_rows, val=val_rows, learn_statistics=False)
    keep_best = _KeepBestWeights()
    member_trainer = L.Trainer(
        max_epochs=neural_max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EarlyStopping(monitor="val_loss", patience=neural_patience), keep_best],
        **_device_of(trainer),
    )
    if member.fits_once:
        # a library fit draws nothing from torch's global generator, but Lightning's loaders would:
        # keep it as it was, so the members fitted after this one start from the same state
        with torch.random.fork_rng(devices=[]):
            member_trainer.fit(member, datamodule=rows)
        return
    member_trainer.fit(member, datamodule=rows)
    if keep_best.state is not None:
        member.load_state_dict(keep_best.state)
    member.eval()


def _device_of(trainer: L.Trainer | None) -> dict[str, Any]:
    """Trainer arguments for one device of the kind ``trainer`` runs on (cpu when there is none)."""
    device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
    if device.type == "cuda":
        return {"accelerator": "cuda", "devices": [device.index or 0]}
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    return {"accelerator": "cpu", "devices": 1}


def member_input(member: FactoryModule, x: np.ndarray) -> np.ndarray:
    """A batch of the ensemble's input in the member's own view: a tabular member reads a window's last row."""
    return x[:, -1] if not member.input_view().windowed and x.ndim == 3 else x


def predict_rows(member: FactoryModule, split: SplitData, rows: np.ndarray, seq_len: int, batch_size: int) -> np.ndarray:
    """(len(rows), 3) float32 probabilities of the samples ending at ``rows``, in the member's view."""
    dataset = member.input_view(seq_len).dataset(None, split.name, rows, split_data=split)
    member.eval()
    if member.fits_once:  # its library predicts every row in one call
        return member.predict_proba_array(dataset.__getitems__(range(len(dataset)))["x"].numpy())
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_batch)
    return np.concatenate([member.predict_proba_array(batch["x"].numpy()) for batch in loader])


def member_state(member: FactoryModule) -> dict[str, Any]:
    """What a checkpoint keeps of a fitted member: its hyper-parameters and its fitted state."""
    state: dict[str, Any] = {"name": member.registry_name, "hparams": member.hyperparameters()}
    if member.fits_once:
        state["native"] = member.to_native()
    else:
        state["state_dict"] = member.state_dict()
    return state


def restore_member(state: dict[str, Any]) -> FactoryModule:
    """A fitted member back from :func:`member_state`."""
    member = model_class(state["name"])(**state["hparams"])
    if member.fits_once:
        member.estimator_ = member.from_native(state["native"])
    else:
        member.ensure_network()
        member.load_state_dict(state["state_dict"])
        member.eval()
    return member


class _KeepBestWeights(Callback):
    """Keep the weights of the epoch with the lowest val_loss in memory (no checkpoint files)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and float(loss) < self.best:
            self.best = float(loss)
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
