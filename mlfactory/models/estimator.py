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

import math
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mlfactory.data.split import SplitRows
from mlfactory.metrics import weighted_nll
from mlfactory.models.base import Batch, FactoryModule, library_version, read_native

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
# per-round curves under the library's own metric names: {"train": {"mlogloss": [...]}, "val": {...}}
RoundHistory = dict[str, dict[str, list[float]]]

def as_split_rows(data: SplitRows | Arrays) -> SplitRows:
    """``data`` as :class:`SplitRows`: ``(X, y, w)`` arrays become every row of those arrays."""
    return data if isinstance(data, SplitRows) else SplitRows(*data)


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool) -> Any:
    """A one-line tqdm bar on stderr: a widget in Jupyter when ipywidgets is installed, else text
    rewritten in place (``\r``), which a terminal, a notebook cell and a log file all show as one line."""
    import importlib.util

    if enabled and "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:  # tqdm.auto would warn about ipywidgets in a notebook without them
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=True, file=sys.stderr,
                dynamic_ncols=True)


class FitProgress:
    """A progress bar over one library fit: boosting rounds, or a single step for a one-call fit.

    The library's own per-round callback calls :meth:`round_done`; :meth:`close` ends the bar with
    the rounds trained and the best round. Disabled, it does nothing (tests, ``enable_progress_bar=False``).
    """

    def __init__(self, name: str, total: int | None, enabled: bool, unit: str = "round") -> None:
        self.bar = progress_bar(total=total, desc=name, unit=unit, enabled=enabled)
        self.best = math.inf
        self.best_round: int | None = None

    def round_done(self, index: int, val_loss: float | None = None) -> None:
        """Round ``index`` (0-based) finished with validation log loss ``val_loss``."""
        if val_loss is not None and val_loss < self.best:
            self.best, self.best_round = val_loss, index
        self.bar.update(index + 1 - self.bar.n)
        if val_loss is not None:
            self.bar.set_postfix_str(f"val log loss {val_loss:.4f}, best {self.best:.4f} at {self.best_round}",
                                     refresh=False)

    def close(self, summary: dict[str, Any]) -> None:
        """End the bar with what the fit did (:meth:`FitOnceModule.fit_summary_`)."""
        if "rounds_trained" in summary:
            self.bar.total = summary["rounds_trained"]  # a full bar: the fit is over, however early it stopped
            self.bar.update(summary["rounds_trained"] - self.bar.n)
            stop = "early stopped" if summary["early_stopped"] else "no early stop"
            self.bar.set_postfix_str(
                f"{summary['rounds_trained']} of {summary['max_rounds']} rounds, best iteration "
                f"{summary['best_iteration']} (val log loss {summary['best_val_log_loss']:.4f}), {stop}",
                refresh=False,
            )
        else:
            self.bar.update(1 - self.bar.n)
        self.bar.close()


class FitOnceModule(FactoryModule):
    """Base of every model that its library (or its members) fits once instead of by gradient steps.

    A subclass provides :meth:`fit_on` (fit on the data module's training rows and log train
    metrics) and :attr:`is_fitted`; the Lightning loop around it is shared. Fitted state ends in
    ``_``, as in scikit-learn.
    """

    fits_once = True
    shows_own_progress: ClassVar[bool] = False
    """Shows a progress bar of its own fit (:class:`FitProgress`), so Lightning's epoch bar is hidden."""
    round_metric_names: ClassVar[dict[str, str]] = {}
    """The library's per-round metric names mapped to one name per quantity (``{"mlogloss": "log_loss"}``):
    TensorBoard's ``rounds/<split>_<name>`` tags are the same for every library, so curves overlay."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        # a parameter for the no-op optimizer step; fit-once models have no others
        self._step_anchor = nn.Parameter(torch.zeros(1))
        self.history_: RoundHistory = {}
        self.fit_summary_: dict[str, Any] = {}
        self._fitted_this_run = False
        self._hidden_bar: Any = None

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

    def on_fit_start(self) -> None:
        # the fit is one library call inside the first training step: Lightning's epoch bar would count
        # batches that are never run (1 of 97), so it stays hidden while the model shows its own progress
        bar = self.trainer.progress_bar_callback
        if self.shows_own_progress and bar is not None and bar.is_enabled:
            bar.disable()
            self._hidden_bar = bar

    def on_train_start(self) -> None:
        self._fitted_this_run = False

    def on_train_end(self) -> None:
        if self._hidden_bar is not None:  # back for what follows: the record, test, predict
            self._hidden_bar.enable()
            self._hidden_bar = None

    def progress_enabled(self) -> bool:
        """Whether a bar of the fit is wanted: the trainer shows progress bars (``enable_progress_bar``)."""
        if self._trainer is None:
            return False
        return self._hidden_bar is not None or (
            self.trainer.progress_bar_callback is not None and self.trainer.progress_bar_callback.is_enabled
        )

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
        """Per-round curves as logger steps, ``rounds/<split>_<quantity>`` (e.g. ``rounds/val_log_loss``)."""
        for split, curves in self.history_.items():
            for metric, values in curves.items():
                tag = f"rounds/{split}_{self.round_metric_names.get(metric, metric)}"
                for step, value in enumerate(values):
                    for logger in self.loggers:
                        logger.log_metrics({tag: float(value)}, step=step)

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

    While it fits, a bar shows its progress (:class:`FitProgress`; rounds for boosting) when the
    trainer shows progress bars. Fitted state ends in ``_`` (``estimator_``, ``history_``,
    ``fit_summary_``), as in scikit-learn.
    """

    library: ClassVar[str] = ""
    native_suffix: ClassVar[str] = ""
    shows_own_progress = True

    def __init__(self) -> None:
        super().__init__()
        self.estimator_: Any = None
        self._progress: FitProgress | None = None

    @property
    def is_fitted(self) -> bool:
        return self.estimator_ is not None

    # --- what a subclass provides -------------------------------------------------------------
    def fit_on(self, datamodule: Any) -> None:
        """Fit on the data module's training split (early stopping on val); log train metrics."""
        train, val = self.split_input(datamodule, "train"), self.split_input(datamodule, "val")
        estimator = self.build_estimator()
        self._progress = self.new_progress()
        try:
            self.history_ = self.fit_estimator(estimator, train, val)
            self.estimator_ = estimator
            self.fit_summary_ = self.summarize_fit()
            self._progress.close(self.fit_summary_)
        finally:
            self._progress.bar.close()  # closing twice is harmless; an exception must not leave a bar open
            self._progress = None
        del train, val  # a subset's gathered copies (estimators without a batched path) go before predicting
        rows = datamodule.split_rows("train")
        self.log_train_metrics(self.batched_proba(rows), rows.y_used, rows.w_used)

    def split_input(self, datamodule: Any, split: str) -> Any:
        """What :meth:`fit_estimator` gets of ``split``: ``(X, y, w)`` arrays (``datamodule.arrays``), views
        of the container's when the rows in use are one consecutive block, else gathered. Estimators that
        read a split in batches return ``datamodule.split_rows(split)`` instead, so that a subset's
        features are never copied whole."""
        return datamodule.arrays(split)

    def batched_proba(self, rows: SplitRows, batch_rows: int | None = None) -> np.ndarray:
        """(n, 3) probabilities of the rows in use, predicted ``batch_rows`` at a time: a library's
        prediction buffers (and a subset's gathered features) stay the size of one batch."""
        parts = [self.estimator_proba(rows.features(start, stop)) for start, stop in rows.batches(batch_rows)]
        return np.concatenate(parts) if parts else np.zeros((0, 3))

    def new_progress(self) -> FitProgress:
        """The bar of one fit: a single step here; boosters count rounds."""
        return FitProgress(f"{self.registry_name or type(self).__name__} fit", 1, self.progress_enabled(), unit="fit")

    def summarize_fit(self) -> dict[str, Any]:
        """What the fit did, for the run record's ``training_metrics.json``; boosters report their rounds."""
        return {}

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
