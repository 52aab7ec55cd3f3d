"""Ensemble members: build them from registry names, fit them on rows of a split, predict rows.

Every member sees its own view of the same samples: a sample is the row of its last bar, a tabular
member reads that row, a sequence member reads the window ending at it. So members of different
families line up row by row, and an ensemble can mix them.
"""

from __future__ import annotations

import contextvars
from typing import Any, Union

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader

from mlfactory.data.container import SplitData, TimeSeriesDataContainer
from mlfactory.data.windows import SequenceDataset, TabularDataset, collate_batch
from mlfactory.errors import EnsembleCompatibilityError, ModelError, RegistryError
from mlfactory.models.base import FactoryModule
from mlfactory.models.estimator import EstimatorModule
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
    if cls.input_kind not in ("tabular", "sequence"):
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
    container: TimeSeriesDataContainer,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    seq_len: int,
    neural_max_epochs: int,
    neural_patience: int,
    batch_size: int,
) -> None:
    """Fit ``member`` on ``train_rows`` of the train split, early-stopping on ``val_rows`` of val."""
    train, val = container.split("train"), container.split("val")
    if isinstance(member, EstimatorModule):
        estimator = member.build_estimator()
        member.history_ = member.fit_estimator(estimator, _arrays(train, train_rows), _arrays(val, val_rows))
        member.estimator_ = estimator
        return
    member.hparams["n_features"] = container.n_features
    if "n_steps" in member.hparams and member.hparams["n_steps"] is None:
        member.hparams["n_steps"] = seq_len  # networks that read the whole window at once
    member.ensure_network()
    keep_best = _KeepBestWeights()
    trainer = L.Trainer(
        max_epochs=neural_max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=[EarlyStopping(monitor="val_loss", patience=neural_patience), keep_best],
    )
    trainer.fit(
        member,
        train_dataloaders=_loader(SequenceDataset(train, seq_len, train_rows), batch_size, shuffle=True),
        val_dataloaders=_loader(SequenceDataset(val, seq_len, val_rows), 4 * batch_size),
    )
    if keep_best.state is not None:
        member.load_state_dict(keep_best.state)
    member.eval()


def member_batch_proba(member: FactoryModule, x: torch.Tensor) -> torch.Tensor:
    """Probabilities of one batch in the member's own view: a tabular member reads the last row."""
    view = x[:, -1] if member.input_kind == "tabular" and x.dim() == 3 else x
    if isinstance(member, EstimatorModule):
        return torch.as_tensor(member.estimator_proba(view.detach().cpu().numpy()), dtype=torch.float32)
    member.eval()
    with torch.no_grad():
        return member(view.to(member.device)).float().softmax(dim=-1).cpu()


def predict_rows(member: FactoryModule, split: SplitData, rows: np.ndarray, seq_len: int, batch_size: int) -> np.ndarray:
    """(len(rows), 3) probabilities of the samples ending at ``rows``."""
    if isinstance(member, EstimatorModule):
        return np.asarray(member.estimator_proba(split.features[rows]), dtype=np.float32)
    loader = _loader(SequenceDataset(split, seq_len, rows), batch_size)
    return torch.cat([member_batch_proba(member, batch["x"]) for batch in loader]).numpy()


def member_state(member: FactoryModule) -> dict[str, Any]:
    """What a checkpoint keeps of a fitted member: its hyper-parameters and its fitted state."""
    state: dict[str, Any] = {"name": member.registry_name, "hparams": member.hyperparameters()}
    if isinstance(member, EstimatorModule):
        state["native"] = member.to_native()
    else:
        state["state_dict"] = member.state_dict()
    return state


def restore_member(state: dict[str, Any]) -> FactoryModule:
    """A fitted member back from :func:`member_state`."""
    member = model_class(state["name"])(**state["hparams"])
    if isinstance(member, EstimatorModule):
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


def _arrays(split: SplitData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(rows) == len(split):
        return split.features, split.labels, split.weights  # every row: no copy
    return split.features[rows], split.labels[rows], split.weights[rows]


def _loader(dataset: SequenceDataset | TabularDataset, batch_size: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_batch)
