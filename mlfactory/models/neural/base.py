"""The base of every neural model: weighted cross-entropy, optimizers and schedulers, lazy sizing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mlfactory.models.base import Batch, FactoryModule, read_native

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class NeuralModule(FactoryModule):
    """A model trained by gradient descent. Subclasses implement :meth:`build_network` only.

    ``build_network(n_features)`` returns an ``nn.Module`` mapping ``x`` (batch, seq_len, n_features)
    for sequence models, (batch, n_features) for tabular ones, to logits (batch, 3). When
    ``n_features`` is not given it is read from the data at the start of a fit and saved in the
    hyper-parameters, so a checkpoint rebuilds the same network.

    This base owns the arguments every neural model shares (below). A subclass's typed signature
    lists only its own arguments and ends in ``**kwargs``, which it passes to ``super().__init__``:
    LightningCLI follows that call into this signature (``--model.help`` lists both), and the
    ``save_hyperparameters()`` here saves the arguments of the whole ``__init__`` chain.

    Args:
        n_features: input features per time step; unset = taken from the data.
        learning_rate: optimizer step size.
        weight_decay: L2 penalty (decoupled for AdamW).
        optimizer: ``adamw``, ``adam`` or ``sgd`` (with momentum 0.9).
        lr_scheduler: ``plateau`` halves the rate when ``val_loss`` has not improved for
            ``plateau_patience`` epochs, never below ``min_lr``; ``cosine`` anneals it over
            ``max_epochs`` down to ``min_lr``; ``none`` keeps it constant.
        plateau_patience: epochs without a better ``val_loss`` before ``plateau`` halves the rate.
        min_lr: the floor of the learning rate under ``plateau`` and ``cosine`` (0: none).

    The progress bar shows ``samples/s``: training samples per second of wall time since the epoch
    began (data loading included), so a slow model is visible from the first batches.
    """

    param_ranges = {
        "learning_rate": (0.0, 10.0),
        "weight_decay": (0.0, None),
        "dropout": (0.0, 0.95),
        "plateau_patience": (0, None),
        "min_lr": (0.0, 10.0),
    }

    def __init__(
        self,
        *,
        n_features: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr_scheduler: Literal["plateau", "cosine", "none"] = "plateau",
        plateau_patience: int = 2,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        self.net: nn.Module | None = None
        self._epoch_clock: tuple[float, int] = (time.perf_counter(), 0)  # (epoch start, samples seen)
        self.save_hyperparameters()
        self.ensure_network()

    def ensure_network(self) -> None:
        """Build the layers once ``n_features`` is known (given, read from the data, or from a checkpoint)."""
        if self.net is None and self.hparams.get("n_features") is not None:
            self.net = self.build_network(self.hparams["n_features"])

    def build_network(self, n_features: int) -> nn.Module:
        """The model's layers: (batch, [seq_len,] n_features) -> logits (batch, 3)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Check hyper-parameters; size the network from the data when ``n_features`` was not given."""
        super().setup(stage)
        container = getattr(getattr(self.trainer, "datamodule", None), "container", None)
        if container is None:
            self.ensure_network()
            self._require(self.net is not None, "n_features is unset and no FactoryDataModule tells it; pass n_features")
            return
        if self.hparams.get("n_features") is None:
            self.hparams["n_features"] = container.n_features
        self.ensure_network()
        self._require(
            self.hparams["n_features"] == container.n_features,
            f"was built for {self.hparams['n_features']} features but the data has {container.n_features}; "
            "train on data with the same feature columns",
        )

    # arguments added after checkpoints were written, with the value that rebuilds those checkpoints
    former_values: dict[str, Any] = {}
    # arguments whose default changed: a saved model was built with the value its files record, not
    # today's default, so ``load_native`` takes those values from ``hparams.json`` (a checkpoint and a
    # bundle already rebuild from every recorded argument)
    changed_defaults: tuple[str, ...] = ()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a checkpoint from before an argument existed was built with its former value, not today's default
        saved = checkpoint.get("hyper_parameters") or {}
        former = {name: value for name, value in self.former_values.items() if name not in saved}
        if former:
            self.hparams.update(former)
            self.net = None
        # the layers must exist before Lightning loads the state dict into them
        self.ensure_network()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ensure_network()
        self._require(self.net is not None, "n_features is unset; pass n_features or train it on a FactoryDataModule")
        return self.net(x)

    def loss_and_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["x"])
        per_sample = F.cross_entropy(logits.float(), batch["y"], reduction="none")
        weights = batch["w"].to(per_sample.dtype)
        loss = (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        return loss, logits.float().softmax(dim=-1)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, probs = self.loss_and_probs(batch)
        self.log_metrics("train", loss, probs.detach(), batch["y"])
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_clock = (time.perf_counter(), 0)

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        """Show ``samples/s`` in the progress bar: samples trained this epoch / wall seconds since it began."""
        start, seen = self._epoch_clock
        seen += len(batch["y"])
        self._epoch_clock = (start, seen)
        elapsed = time.perf_counter() - start
        if elapsed > 0:
            self.log("samples/s", seen / elapsed, prog_bar=True, logger=False, on_step=True, on_epoch=False,
                     batch_size=len(batch["y"]))

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        extra = {"momentum": 0.9} if hp.optimizer == "sgd" else {}
        optimizer = _OPTIMIZERS[hp.optimizer](
            self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay, **extra
        )
        if hp.lr_scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=hp.get("plateau_patience", 2), min_lr=hp.get("min_lr", 0.0)
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}
        if hp.lr_scheduler == "cosine":
            epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer is not None else 1
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp.get("min_lr", 0.0))
            return [optimizer], [cosine]
        return optimizer

    def export_native(self, directory: Path) -> None:
        """``weights.pt`` (the state dict) and ``hparams.json``: enough to rebuild and reload the network."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "weights.pt")
        (directory / "hparams.json").write_text(
            json.dumps({"class_path": f"{type(self).__module__}.{type(self).__qualname__}",
                        "init_args": self.hyperparameters()}, indent=2)
        )

    def load_native(self, directory: Path) -> "NeuralModule":
        """The weights back from ``weights.pt`` (read as tensors only, never as a pickle); returns ``self``.

        Sizes the network from the ``hparams.json`` beside them when this model was built without
        them (an ensemble member rebuilt from its spec); only those sizes, the ``former_values``
        of arguments that file predates and the recorded values of ``changed_defaults`` are read from it.
        """
        directory = Path(directory)
        sizes = [name for name in ("n_features", "n_steps") if name in self.hparams and self.hparams[name] is None]
        if sizes or self.former_values or self.changed_defaults:
            path = directory / "hparams.json"
            init_args = read_native(path, "mlfactory", lambda: json.loads(path.read_text())["init_args"])
            for name in sizes:
                value = init_args.get(name)
                self._require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                              f"{path}: {name}={value!r} is not a positive whole number")
                self.hparams[name] = value
            # files written before an argument existed were built with its former value (as checkpoints)
            former = {name: value for name, value in self.former_values.items() if name not in init_args}
            # and with the values it records of arguments whose default has changed since
            for name in self.changed_defaults:
                if name in init_args and init_args[name] != self.hparams.get(name):
                    value, current = init_args[name], self.hparams.get(name)
                    self._require(value is None or current is None or type(value) is type(current),
                                  f"{path}: {name}={value!r} is not a {type(current).__name__}")
                    former[name] = value
            if former:
                self.hparams.update(former)
                self.net = None
        self.ensure_network()
        path = directory / "weights.pt"
        weights = read_native(path, "torch", lambda: torch.load(path, map_location="cpu", weights_only=True))
        read_native(path, "torch", lambda: self.load_state_dict(weights))
        return self.eval()


class WindowedNeuralModule(NeuralModule):
    """A :class:`NeuralModule` whose layers also depend on the window length ``n_steps``.

    Some layers read the whole window at once (iTransformer's series embedding, PatchTST's flatten
    head, N-BEATS' fully connected input), so the network is built once both ``n_features`` and
    ``n_steps`` are known. Like ``n_features``, an unset ``n_steps`` is read from the data module's
    ``seq_len`` when a fit starts and saved in the hyper-parameters, so a checkpoint rebuilds the
    same network. (It is not called ``seq_len``: Lightning refuses a model and a data module
    hyper-parameter of the same name with different values, and ours starts unset.)

    Args:
        n_steps: window length the layers are built for; unset = the data's ``seq_len``.
        **kwargs: the shared arguments of :class:`NeuralModule`.
    """

    param_ranges = {**NeuralModule.param_ranges, "n_steps": (1, None)}

    def __init__(self, *, n_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def ensure_network(self) -> None:
        """Build the layers once ``n_features`` and ``n_steps`` are both known."""
        if self.hparams.get("n_steps") is not None:
            super().ensure_network()

    def setup(self, stage: str) -> None:
        """Take an unset ``n_steps`` from the data module's ``seq_len``; refuse a window of another length."""
        seq_len = self.data_seq_len()
        if seq_len is None:
            self._require(
                self.hparams.get("n_steps") is not None,
                "n_steps (the window length) is unset and no data module tells it; pass n_steps, e.g. the "
                "seq_len of the windows it will read",
            )
        elif self.hparams.get("n_steps") is None:
            self.hparams["n_steps"] = seq_len
        self._require(
            seq_len is None or self.hparams["n_steps"] == seq_len,
            f"was built for windows of n_steps={self.hparams['n_steps']} rows but the data's seq_len is {seq_len}; "
            f"pass --data.seq_len {self.hparams['n_steps']}",
        )
        super().setup(stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_steps = self.hparams.get("n_steps")
        self._require(
            n_steps is None or x.shape[1] == n_steps,
            f"was built for windows of n_steps={n_steps} rows but got {x.shape[1]}",
        )
        return super().forward(x)
