"""The LightningDataModule that hands every model the view of the splits it asks for."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from mlfactory.data.container import CLASS_NAMES, TimeSeriesDataContainer, split_file
from mlfactory.data.split import SplitRows
from mlfactory.data.views import InputView
from mlfactory.data.windows import PermutationSampler, collate_batch
from mlfactory.errors import DataError

Split = Literal["train", "val", "test"]


class FactoryDataModule(L.LightningDataModule):
    """Train/val/test splits of one split directory, viewed as the attached model needs.

    The model's ``input_kind`` picks the view: ``tabular`` models get rows (and estimators read the
    whole arrays through :meth:`arrays`), ``sequence`` models get lazy windows of ``seq_len`` rows,
    ``multires`` models get windows of raw bars at several ``timeframes`` (docs/data.md). Each split
    is read once, on the first ``setup``.

    Args:
        data_dir: split directory with ``{train,val,test}_scaled.parquet`` (docs/data.md). Unset: the
            embedded sample data, generated once into a cache directory.
        horizon: label horizon in bars; reads ``label_h{horizon}`` and ``sample_weight_h{horizon}``.
        seq_len: rows per window for sequence models.
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and predict; unset means 4 x ``batch_size``.
        num_workers: DataLoader worker processes. Batches are one gather each, so 0 is usually fastest.
        predict_split: the split that ``predict`` runs on.
        sample_signal: with the embedded sample data, whether the generator plants its learnable
            relation. ``False`` gives the no-signal variant, on which no model may beat chance.
        balance_classes: multiply every split's sample weights by ``n / (3 * n_class)``, with the
            class totals taken from the (weighted) training split, so that each class weighs the same
            in the loss. Without it most models learn to predict the majority (neutral) class.
        input_kind: the view to serve when no model is attached (a data module used on its own);
            with a Trainer, the model's own ``input_kind`` wins.
        timeframes: the multi-resolution view's timeframes (``1min`` ... ``4h``), each a multiple of
            the bars' resolution.
        lookback: bins per timeframe window in the multi-resolution view; unset, every timeframe
            covers the same wall-clock ``span``.
        span: wall-clock span of each multi-resolution window when ``lookback`` is unset (``8h``:
            96 x 5min, 32 x 15min, 8 x 1h).
        threads: CPU threads for the fit: torch's intra-op threads (``torch.set_num_threads``, set
            when the data module is set up, for the whole process), pyarrow's threads that decode the
            splits (``pyarrow.set_cpu_count``) and the ``n_jobs`` of estimators
            whose ``n_jobs`` is unset or "every core". Unset: torch's default (every core). Lower it
            whenever another job shares the machine (docs/performance.md, "Threads").
    """

    def __init__(
        self,
        data_dir: str | None = None,
        horizon: int = 5,
        seq_len: int = 30,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        predict_split: Split = "test",
        sample_signal: bool = True,
        balance_classes: bool = True,
        input_kind: Literal["tabular", "sequence", "multires"] = "tabular",
        timeframes: list[str] = ["5min", "15min", "1h"],  # noqa: B006 - LightningCLI shows the default
        lookback: int | None = None,
        span: str = "8h",
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.horizon = horizon
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.num_workers = num_workers
        self.predict_split = predict_split
        self.sample_signal = sample_signal
        self.balance_classes = balance_classes
        self.input_kind = input_kind
        self.timeframes = list(timeframes)
        self.lookback = lookback
        self.span = span
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise DataError(f"FactoryDataModule: threads={threads!r} is not a positive whole number; "
                            "pass --data.threads 1 (or more), or leave it unset for every core")
        self.threads = threads
        self.container: TimeSeriesDataContainer | None = None
        self.unbalanced_container: TimeSeriesDataContainer | None = None  # before balance_classes
        self.row_subset: dict[str, np.ndarray] = {}  # split -> its rows in use (restricted())

    def prepare_data(self) -> None:
        """Build the embedded sample data on first use (once per machine)."""
        if self.data_dir is None:
            from mlfactory.data.synthetic import default_data_dir

            default_data_dir(signal=self.sample_signal)

    def setup(self, stage: str) -> None:
        if self.threads is not None:
            import pyarrow
            import torch

            torch.set_num_threads(self.threads)
            pyarrow.set_cpu_count(self.threads)  # the parquet reader decodes with pyarrow's thread pool
        if self.container is None:
            container = TimeSeriesDataContainer.from_parquet_dir(self.resolved_data_dir(), self.horizon)
            _warn_single_class(container)
            self.unbalanced_container = container
            self.container = container.with_balanced_classes() if self.balance_classes else container

    def resolved_data_dir(self) -> Path:
        """The split directory in use: ``data_dir``, or the embedded sample data's cache."""
        if self.data_dir is not None:
            return Path(self.data_dir)
        from mlfactory.data.synthetic import default_data_dir

        return default_data_dir(signal=self.sample_signal)

    def input_view(self) -> InputView:
        """The view of the attached model (its ``input_kind``), else of ``input_kind``; ``seq_len`` is ours."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        kind = getattr(model, "input_kind", None) or self.input_kind
        reader = type(model).__name__ if model is not None else type(self).__name__
        return InputView.of(kind, self.seq_len, tuple(self.timeframes), self.lookback, self.span, reader=reader)

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` in the current view, over its rows in use (every valid row by default)."""
        return self.input_view().dataset(self._require_container(), split, self.row_subset.get(split))

    def sample_rows(self, split: str, view: InputView | None = None) -> np.ndarray:
        """The rows of ``split`` that are samples in ``view`` (default: the current one), within the rows in use."""
        if split in self.row_subset:
            return self.row_subset[split]
        return (view or self.input_view()).valid_rows(self._require_container().split(split))

    def restricted(
        self,
        train: np.ndarray | None = None,
        val: np.ndarray | None = None,
        predict: np.ndarray | None = None,
        learn_statistics: bool = True,
    ) -> "FactoryDataModule":
        """The same data module over given rows of the same container: fit any model on any subset.

        ``train`` and ``val`` are rows of the train and val splits, ``predict`` rows of
        ``predict_split``; a split not given keeps all its rows. The result is an ordinary data module:
        ``Trainer.fit(model, datamodule=dm.restricted(train=rows))`` fits any registered model,
        neural or not, on those rows. Estimators read exactly these rows through :meth:`arrays`;
        every view serves exactly them (each must be a sample of the model's view, e.g. have a full window).

        With ``learn_statistics`` (and ``balance_classes``), the class-balance factors are learned
        again from the ``train`` rows alone, so nothing about the other rows reaches the fit; without
        it, the factors learned from the whole training split are kept. Call after ``setup``.
        """
        base = self._require_container()
        restricted = copy.copy(self)
        restricted.trainer = None
        restricted.row_subset = dict(self.row_subset)
        for split, rows in (("train", train), ("val", val), (self.predict_split, predict)):
            if rows is not None:
                restricted.row_subset[split] = np.asarray(rows, dtype=np.int64)
        if learn_statistics and self.balance_classes and train is not None and self.unbalanced_container is not None:
            restricted.container = _balanced_on_rows(self.unbalanced_container, restricted.row_subset["train"])
        else:
            restricted.container = base
        return restricted

    def with_threads(self, threads: int) -> "FactoryDataModule":
        """The same data module fitting with ``threads`` CPU threads, its recorded hyper-parameters saying so
        (a cross-validation worker's share of the cores)."""
        result = copy.copy(self)
        result.threads = threads
        result._hparams = copy.copy(self.hparams)
        result._hparams["threads"] = threads
        return result

    def multires_lookbacks(self) -> dict[str, int]:
        """Bins per window of each multi-resolution timeframe, in ``timeframes`` order (builds the bins once)."""
        container = self._require_container()
        return container.get_multi_resolution_bars("train", self.timeframes, self.lookback, self.span).bars.lookbacks

    def split_rows(self, split: str) -> SplitRows:
        """The rows of ``split`` that estimators read, without copying the features: the container's
        arrays and the rows in use. Rows that are one consecutive block (every row, a walk-forward fold)
        become views of that block, with no row subset left; others stay a subset, which a library with
        a batched builder reads in pieces (XGBoost) and :meth:`arrays` gathers."""
        X, y, w = self._require_container().get_sklearn_arrays(split)
        rows = self.row_subset.get(split)
        if rows is not None and _consecutive(rows):
            start, stop = int(rows[0]), int(rows[-1]) + 1
            return SplitRows(X[start:stop], y[start:stop], w[start:stop])
        return SplitRows(X, y, w, rows)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, w) of a split for estimators: views of the container's arrays, or the rows in use gathered."""
        return self.split_rows(split).arrays()

    def train_dataloader(self) -> DataLoader:
        return self.eval_loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader(self.predict_split)

    def eval_loader(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        """A loader over the whole of ``split`` in the model's view, in row order by default.

        ``shuffle`` draws a new order each epoch with :class:`~mlfactory.data.windows.PermutationSampler`
        (4 bytes per sample where torch's ``RandomSampler`` holds ~36).
        """
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=batch_size or self.eval_batch_size,
            sampler=PermutationSampler(dataset) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def _require_container(self) -> TimeSeriesDataContainer:
        if self.container is None:
            raise DataError("FactoryDataModule has no data yet: call prepare_data() and setup('fit') first")
        return self.container


def _consecutive(rows: np.ndarray) -> bool:
    """Whether ``rows`` are ``a, a+1, ..., b`` (at least one row)."""
    return len(rows) > 0 and int(rows[-1]) - int(rows[0]) + 1 == len(rows) and bool((np.diff(rows) == 1).all())


def _balanced_on_rows(container: TimeSeriesDataContainer, rows: np.ndarray) -> TimeSeriesDataContainer:
    """``container`` balanced with class factors learned from ``rows`` of its train split only."""
    train = container.split("train")
    mask = np.zeros(len(train), dtype=np.float32)
    mask[rows] = 1.0
    splits = dict(container.splits, train=dataclasses.replace(train, weights=train.weights * mask))
    # the container's own rule, on a train split whose other rows weigh nothing
    factors = np.asarray(TimeSeriesDataContainer(splits, container.feature_names, container.horizon, container.data_dir,
                                                 container.metadata).with_balanced_classes().class_factors)
    balanced = TimeSeriesDataContainer(
        {name: dataclasses.replace(s, weights=(s.weights * factors[s.labels]).astype(np.float32))
         for name, s in container.splits.items()},
        container.feature_names, container.horizon, container.data_dir, container.metadata,
    )
    balanced.class_factors = factors.tolist()
    balanced._multires = container._multires  # raw-bar bins do not depend on the weights: keep the ones built
    return balanced


# what a split holding one class makes meaningless (train with one class is refused by the container)
_SINGLE_CLASS_CONSEQUENCE = {
    "val": "val balanced accuracy and calibration, and the val_loss that picks the best checkpoint and drives "
    "early stopping, are not meaningful",
    "test": "balanced accuracy and the per-class test metrics are not meaningful",
}


def _warn_single_class(container: TimeSeriesDataContainer) -> None:
    """Warn when the val or test split holds a single class: training runs, but its scores mislead."""
    import numpy as np

    for split, consequence in _SINGLE_CLASS_CONSEQUENCE.items():
        classes = np.unique(container.split(split).labels)
        if len(classes) == 1:
            warnings.warn(
                f"{container.data_dir / split_file(split)}: label_h{container.horizon} holds only class "
                f"{CLASS_NAMES[classes[0]]!r} in the {split} split ({len(container.split(split))} rows); "
                f"{consequence}. Choose split boundaries (or a horizon) that give {split} every class.",
                UserWarning,
                stacklevel=3,
            )
