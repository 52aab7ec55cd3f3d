"""The fit-once base under every non-gradient model, and the wrapper that adapts one library estimator.

:class:`FitOnceModule` is what estimators (boosting, classical) and ensembles share: the model is
fitted once, on the training rows the data module serves, inside the first training step, with the
library's own early stopping on the validation rows where it has one. Then one no-op optimizer step
runs (``ModelCheckpoint`` saves nothing while ``global_step`` is 0) and the trainer is told to stop,
which makes Lightning validate at once. Validation, test and prediction go through the same batched
steps, metrics and run record as neural models.

:class:`EstimatorModule` adapts one library estimator; the fitted estimator travels inside the
Lightning checkpoint as ``bytes`` of the library's native format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mlfactory.metrics import weighted_nll
from mlfactory.models.base import Batch, FactoryModule, library_version, read_native

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
# per-round curves: {"train": {"mlogloss": [...]}, "val": {...}}
RoundHistory = dict[str, dict[str, list[float]]]


class FitOnceModule(FactoryModule):
    """Base of every model that its library (or its members) fits once instead of by gradient steps.

    A subclass provides :meth:`fit_on` (fit on the data module's training rows and log train
    metrics) and :attr:`is_fitted`; the Lightning loop around it is shared. Fitted state ends in
    ``_``, as in scikit-learn.
    """

    fits_once = True

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        # a parameter for the no-op optimizer step; fit-once models have no others
        self._step_anchor = nn.Parameter(torch.zeros(1))
        self.history_: RoundHistory = {}
        self._fitted_this_run = False

    # --- what a subclass provides -------------------------------------------------------------
    def fit_on(self, datamodule: Any) -> None:
        """Fit on the data module's training rows (early stopping on its val rows); log train metrics."""
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        """True once fitted or restored."""
        raise NotImplementedError

    # --- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._require(
            self.trainer.world_size == 1,
            f"is fitted by its library in one process, but the trainer runs {self.trainer.world_size} processes. "
            "Use --trainer.devices 1 and the default strategy (the library's own threads use every core)",
        )
        if stage == "fit":
            max_epochs = self.trainer.max_epochs
            self._require(
                max_epochs is None or max_epochs >= 1,
                f"is fitted once by its library, so max_epochs={max_epochs} does not apply; leave it unset or use 1",
            )

    def on_train_start(self) -> None:
        self._fitted_this_run = False

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> int | None:
        return -1 if self._fitted_this_run else None  # fitted already: skip the rest of the epoch

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        datamodule = self.trainer.datamodule
        self._require(
            hasattr(datamodule, "container"),
            "trains on whole splits and needs a FactoryDataModule: trainer.fit(model, datamodule=FactoryDataModule())",
        )
        self.fit_on(datamodule)
        self._fitted_this_run = True
        self._log_rounds()
        self.optimizers().step()  # no gradients: changes nothing, but counts as a step for checkpointing
        self.trainer.should_stop = True  # one fit is the whole training; Lightning validates next

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor] | None:
        if not self.is_fitted and self.trainer.sanity_checking:
            return None  # nothing to validate before the fit
        return super().validation_step(batch, batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self._step_anchor], lr=0.0)

    def loss_and_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        self._require(self.is_fitted, "is not fitted; train it or load a checkpoint first")
        x = batch["x"]
        probs = torch.as_tensor(self.predict_proba_array(x.detach().cpu().numpy()), dtype=torch.float32, device=x.device)
        return weighted_nll(probs, batch["y"], batch["w"].float()), probs

    # --- logging -----------------------------------------------------------------------------
    def _log_rounds(self) -> None:
        """Per-round curves as logger steps, e.g. ``rounds/val_mlogloss`` for every boosting round."""
        for split, curves in self.history_.items():
            for metric, values in curves.items():
                for step, value in enumerate(values):
                    for logger in self.loggers:
                        logger.log_metrics({f"rounds/{split}_{metric}": float(value)}, step=step)

    def log_train_metrics(self, probs: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        """Log the training split's loss and metrics from the fitted model's probabilities."""
        probs_t = torch.as_tensor(probs, dtype=torch.float32)
        target, weight = torch.from_numpy(y), torch.from_numpy(w)
        self.log_metrics("train", weighted_nll(probs_t, target, weight), probs_t, target)


class EstimatorModule(FitOnceModule):
    """Base of every non-gradient model. A subclass says what is unique about it:

    - :meth:`build_estimator`: the library's classifier, from ``self.hparams``;
    - :meth:`fit_estimator`: only if the library can early-stop on the validation split or report curves;
    - :meth:`to_native` / :meth:`from_native`, ``library`` and ``native_suffix``: its own file format.

    Fitted state ends in ``_`` (``estimator_``, ``history_``), as in scikit-learn.
    """

    library: ClassVar[str] = ""
    native_suffix: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.estimator_: Any = None

    @property
    def is_fitted(self) -> bool:
        return self.estimator_ is not None

    # --- what a subclass provides -------------------------------------------------------------
    def fit_on(self, datamodule: Any) -> None:
        """Fit on the data module's training split (early stopping on val); log train metrics."""
        train, val = datamodule.arrays("train"), datamodule.arrays("val")
        estimator = self.build_estimator()
        self.history_ = self.fit_estimator(estimator, train, val)
        self.estimator_ = estimator
        X, y, w = train
        self.log_train_metrics(self.estimator_proba(X), y, w)

    def build_estimator(self) -> Any:
        """A new, unfitted estimator configured from ``self.hparams``."""
        raise NotImplementedError

    def fit_estimator(self, estimator: Any, train: Arrays, val: Arrays) -> RoundHistory:
        """Fit on the training arrays; return per-round curves if the library has them."""
        X, y, w = train
        estimator.fit(X, y, sample_weight=w)
        return {}

    def thread_count(self, n_jobs: int | None) -> int | None:
        """``n_jobs`` as the library gets it: unset (``None``) or every core (``-1``) become the data
        module's ``threads`` when it sets them (docs/performance.md, "Threads"); other values stay."""
        if n_jobs is not None and n_jobs != -1:
            return n_jobs
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        threads = getattr(datamodule, "threads", None)
        return n_jobs if threads is None else threads

    def estimator_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) class probabilities of the fitted estimator."""
        return self.estimator_.predict_proba(X)

    def to_native(self) -> bytes:
        """The fitted estimator in the library's native format."""
        raise NotImplementedError

    def from_native(self, data: bytes) -> Any:
        """An estimator restored from :meth:`to_native` bytes."""
        raise NotImplementedError

    def predict_proba_array(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) float32 probabilities straight from the library, without a torch round trip."""
        self._require(self.is_fitted, "is not fitted; train it or load a checkpoint first")
        return np.asarray(self.estimator_proba(x), dtype=np.float32)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the fitted estimator, as bytes of its native format (torch.load's weights_only accepts bytes)
        if self.estimator_ is not None:
            checkpoint["estimator"] = {
                "library": self.library,
                "version": library_version(self.library),
                "format": self.native_suffix,
                "data": self.to_native(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("estimator")
        if stored is not None:
            self.estimator_ = self.from_native(stored["data"])

    def export_native(self, directory: Path) -> None:
        """``model.<suffix>`` in the library's own format, loadable without mlfactory."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"model.{self.native_suffix}").write_bytes(self.to_native())

    def load_native(self, directory: Path) -> "EstimatorModule":
        """The estimator back from ``model.<suffix>`` in ``directory``."""
        path = Path(directory) / f"model.{self.native_suffix}"
        self.estimator_ = read_native(path, self.library, lambda: self.from_native(path.read_bytes()))
        return self
