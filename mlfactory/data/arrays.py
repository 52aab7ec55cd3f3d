"""A data module built from numpy arrays: train any registered model on your own data, e.g. in a notebook.

``FactoryDataModule`` reads a split directory; :class:`ArrayDataModule` takes the three splits as
arrays instead and serves every model the same views: estimators and tabular models get rows,
sequence models get windows. A run record works as usual (predictions, metrics, config).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mlfactory.data.container import CLASS_NAMES, SPLITS, SplitData, TimeSeriesDataContainer
from mlfactory.data.split import SplitRows
from mlfactory.data.datamodule import FactoryDataModule, Split
from mlfactory.errors import DataError

ArraySplit = Sequence[Any]
"""``(X, y)`` or ``(X, y, w)`` of one split (see :class:`ArrayDataModule`)."""

FIRST_TIMESTAMP = np.datetime64("2000-01-01T00:00:00", "ns")
"""The synthetic timestamp of the training split's first row; each later row, in any split, is one minute later."""

_STEP = np.timedelta64(1, "m")


class ArrayDataModule(FactoryDataModule):
    """Train/val/test splits given as numpy arrays, served to every model as ``FactoryDataModule`` does.

    Each split is ``(X, y)`` or ``(X, y, w)``:

    - ``X``: numeric, finite. Either a table, (n, n_features): rows of one series in time order; or
      pre-windowed samples, (n, seq_len, n_features). All splits are of the same kind and width.
    - ``y``: (n,) class indices 0, 1 or 2. The factory's models have three output classes (0 down,
      1 neutral, 2 up for its own labels; any meaning for yours); labels -1/0/+1 become ``y + 1``.
      Estimators learn only the classes the training split holds, so give it all three.
    - ``w``: (n,) sample weights, finite and non-negative; ones when left out.

    Both kinds become a :class:`TimeSeriesDataContainer`, so the views are the usual ones:

    - A table is one series per split. Tabular models and estimators get every row; sequence models
      get windows of ``seq_len`` consecutive rows ending at each row that has ``seq_len - 1`` rows
      before it in its split (the first ``seq_len - 1`` rows of each split are then only history).
    - Pre-windowed samples are laid end to end, one row per step, each window its own segment (no
      window reaches into another). Sequence models get each window as given, gathered for a whole
      batch by one index; tabular models and estimators get each window's last step. The other
      rows carry weight 0, so code that reads every row of a split (ensembles of tabular members,
      permutation importance) counts the samples only.

    Sample identity: a sample is the split row of its last step (the ``row`` of the run record's
    predictions): ``0 .. n-1`` for a table, ``i * seq_len + seq_len - 1`` for window ``i``
    (:meth:`sample_index` maps rows back to ``0 .. n-1``). Rows get synthetic timestamps,
    :data:`FIRST_TIMESTAMP` plus one minute per row, counted on from train through val to test, so
    that the splits are in time order as the factory expects. The symbol is empty.

    Args:
        train: the training split, ``(X, y)`` or ``(X, y, w)``.
        val: the validation split (early stopping, checkpoint selection, estimators' early stopping).
        test: the test split (the run record's test metrics and predictions).
        seq_len: rows per window for sequence models reading a table; unset = 30. With pre-windowed
            samples it is their window length, and a different value is an error.
        horizon: how many rows ahead a label looks; only the stacking ensemble uses it, to purge the
            rows before each held-out fold.
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and predict; unset means 4 x ``batch_size``.
        num_workers: DataLoader worker processes.
        predict_split: the split that ``predict`` runs on.
        input_kind: the view to serve when no model is attached; with a Trainer, the model's own wins.
        feature_names: one name per feature; unset = ``x0``, ``x1``, ...

    Raises:
        DataError: naming the split, the array and what to do, for every way the arrays can be wrong.

    >>> rng = np.random.default_rng(0)
    >>> def split(n):
    ...     return rng.normal(size=(n, 8, 2)), rng.integers(0, 3, n)
    >>> data = ArrayDataModule(split(40), split(10), split(10), input_kind="sequence")
    >>> data.setup("fit")
    >>> data.seq_len, next(iter(data.train_dataloader()))["x"].shape
    (8, torch.Size([40, 8, 2]))
    >>> data.arrays("train")[0].shape  # estimators read the last step of each window
    (40, 2)
    >>> data.sample_index(np.array([7, 15]))
    array([0, 1])
    """

    def __init__(
        self,
        train: ArraySplit,
        val: ArraySplit,
        test: ArraySplit,
        *,
        seq_len: int | None = None,
        horizon: int = 1,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        predict_split: Split = "test",
        input_kind: Literal["tabular", "sequence"] = "tabular",
        feature_names: Sequence[str] | None = None,
    ) -> None:
        self._splits = {name: _check_split(name, split) for name, split in zip(SPLITS, (train, val, test))}
        self.prewindowed = _check_same_kind(self._splits)
        seq_len = _resolve_seq_len(self._splits["train"][0], seq_len)
        n_features = self._splits["train"][0].shape[-1]
        self.feature_names = _feature_names(feature_names, n_features)
        # what save_hyperparameters records instead of the arrays (see below)
        self._settings = {
            "source": "arrays",
            "shapes": {name: list(X.shape) for name, (X, _, _) in self._splits.items()},
            "seq_len": seq_len,
            "horizon": horizon,
            "batch_size": batch_size,
            "eval_batch_size": eval_batch_size,
            "num_workers": num_workers,
            "predict_split": predict_split,
            "input_kind": input_kind,
        }
        super().__init__(
            data_dir=None,
            horizon=horizon,
            seq_len=seq_len,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            predict_split=predict_split,
            balance_classes=False,  # the arrays' weights are used as given
            input_kind=input_kind,
        )

    def save_hyperparameters(self, *args: Any, **kwargs: Any) -> None:
        """Record the settings and the arrays' shapes, never the arrays.

        ``FactoryDataModule.__init__`` saves its init arguments, which here include the data: copied
        into the hyper-parameters, the arrays would be duplicated in memory, sent to the logger and
        written into every checkpoint (which must load with ``weights_only=True``).
        """
        super().save_hyperparameters(self._settings, logger=kwargs.get("logger", True))

    def prepare_data(self) -> None:
        """Nothing to fetch: the arrays are in memory."""

    def setup(self, stage: str) -> None:
        if self.container is None:
            self.container = self._container()

    def dataset(self, split: str):
        """The dataset of ``split`` in the current view; the tabular view of windows is their last steps."""
        if self.prewindowed and split not in self.row_subset:
            view = self.input_view()
            if not view.windowed:
                return view.dataset(self._require_container(), split, self._window_ends(split))
        return super().dataset(split)

    def split_rows(self, split: str) -> SplitRows:
        """The rows estimators read: the table's, or the last step of every window (``arrays`` gathers them)."""
        if not self.prewindowed or split in self.row_subset:
            return super().split_rows(split)
        X, y, w = self._require_container().get_sklearn_arrays(split)
        return SplitRows(X, y, w, self._window_ends(split))

    def _window_ends(self, split: str) -> np.ndarray:
        return self._require_container().split(split).window_end_rows(self.seq_len)

    def sample_index(self, rows: np.ndarray) -> np.ndarray:
        """The position in the split's arrays (``0 .. n-1``) of the samples ending at split ``rows``."""
        rows = np.asarray(rows)
        return rows // self.seq_len if self.prewindowed else rows

    def _container(self) -> TimeSeriesDataContainer:
        splits, first = {}, 0
        for name, (X, y, w) in self._splits.items():
            splits[name] = (_windows_split if self.prewindowed else _table_split)(name, X, y, w, first)
            first += len(splits[name])
        metadata = {"source": "arrays", "prewindowed": self.prewindowed}
        return TimeSeriesDataContainer(splits, list(self.feature_names), self.horizon, data_dir=None, metadata=metadata)


def _table_split(name: str, X: np.ndarray, y: np.ndarray, w: np.ndarray, first: int) -> SplitData:
    """A table as one series; its rows are timestamped from row ``first`` of all splits on."""
    n = len(X)
    return SplitData(
        name=name,
        features=X,
        labels=y,
        weights=w,
        timestamps=FIRST_TIMESTAMP + (first + np.arange(n)) * _STEP,
        symbol_codes=np.zeros(n, dtype=np.int32),
        symbols=("",),
        fwd_returns=None,
        segment_start=np.zeros(n, dtype=np.int64),
    )


def _windows_split(name: str, X: np.ndarray, y: np.ndarray, w: np.ndarray, first: int) -> SplitData:
    """Windows laid end to end (a view, no copy), each its own segment; only their last steps weigh."""
    n, steps, _ = X.shape
    weights = np.zeros(n * steps, dtype=np.float32)
    weights[steps - 1 :: steps] = w
    return SplitData(
        name=name,
        features=X.reshape(n * steps, -1),
        labels=np.repeat(y, steps),
        weights=weights,
        timestamps=FIRST_TIMESTAMP + (first + np.arange(n * steps)) * _STEP,
        symbol_codes=np.zeros(n * steps, dtype=np.int32),
        symbols=("",),
        fwd_returns=None,
        segment_start=np.repeat(np.arange(n, dtype=np.int64) * steps, steps),
    )


# --- validation -----------------------------------------------------------------------------------


def _check_split(name: str, split: ArraySplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X float32 C-contiguous, y int64, w float32) of one split, or a DataError saying what is wrong."""
    if not isinstance(split, (tuple, list)) or len(split) not in (2, 3):
        got = type(split).__name__ + (f" of {len(split)} items" if isinstance(split, (tuple, list)) else "")
        raise DataError(f"{name} must be a tuple (X, y) or (X, y, w) of arrays; got a {got}")
    X = _features(name, split[0])
    y = _labels(name, split[1], len(X))
    w = _weights(name, split[2] if len(split) == 3 else None, len(X))
    return X, y, w


def _features(name: str, X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"X of {name} has dtype {X.dtype}; features must be numbers (bool, integer or float)")
    if X.ndim not in (2, 3) or 0 in X.shape:
        raise DataError(
            f"X of {name} has shape {X.shape}; give a table (n, n_features) or windows (n, seq_len, n_features), "
            "with no empty dimension"
        )
    with np.errstate(over="ignore"):  # reported below, as a value too large for float32
        X = np.ascontiguousarray(X, dtype=np.float32)
    finite = np.isfinite(X)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        at = f"sample {where[0]}, feature {where[-1]}" + (f", step {where[1]}" if X.ndim == 3 else "")
        raise DataError(
            f"X of {name} holds {int((~finite).sum())} NaN or infinite values (or values too large for float32), "
            f"the first at {at}; fill or drop those samples"
        )
    return X


def _labels(name: str, y: Any, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"y of {name} has shape {y.shape}; it must be ({n},), one label per sample of X")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.array_equal(y, np.round(y))):
        raise DataError(f"y of {name} must hold integer class indices; it has dtype {y.dtype}")
    values = np.unique(y)
    if not np.isin(values, (0, 1, 2)).all():
        hint = "; labels -1/0/+1 (down/neutral/up)? pass y + 1" if set(values.tolist()) <= {-1, 0, 1} else ""
        shown = ", ".join(str(v) for v in values[:10].tolist()) + (", ..." if len(values) > 10 else "")
        raise DataError(
            f"y of {name} must hold class indices 0, 1 or 2: the factory's models have {len(CLASS_NAMES)} output "
            f"classes. It holds {shown}{hint}"
        )
    return y.astype(np.int64)


def _weights(name: str, w: Any, n: int) -> np.ndarray:
    if w is None:
        return np.ones(n, dtype=np.float32)
    w = np.asarray(w)
    if w.ndim != 1 or len(w) != n or w.dtype.kind not in "biuf":
        raise DataError(f"w of {name} has shape {w.shape} and dtype {w.dtype}; it must be ({n},) numbers")
    w = w.astype(np.float32)
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise DataError(f"w of {name} must be finite, non-negative and not all zero; fix it or leave it out")
    return w


def _check_same_kind(splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> bool:
    """True when the splits are pre-windowed samples; refuse splits of different kinds or widths."""
    X = splits["train"][0]
    for name, (other, _, _) in splits.items():
        if other.ndim != X.ndim:
            kinds = {2: "a table (n, n_features)", 3: "windows (n, seq_len, n_features)"}
            raise DataError(
                f"train is {kinds[X.ndim]} but {name} is {kinds[other.ndim]}; give every split the same kind"
            )
        if other.shape[1:] != X.shape[1:]:
            raise DataError(
                f"{name} samples have shape {other.shape[1:]} but train samples {X.shape[1:]}; every split needs "
                "the same features" + (" and window length" if X.ndim == 3 else "")
            )
    return X.ndim == 3


def _resolve_seq_len(X: np.ndarray, seq_len: int | None) -> int:
    if X.ndim == 2:
        return 30 if seq_len is None else seq_len
    if seq_len is not None and seq_len != X.shape[1]:
        raise DataError(
            f"seq_len={seq_len} but the arrays are windows of {X.shape[1]} steps; leave seq_len unset for "
            "pre-windowed samples"
        )
    return X.shape[1]


def _feature_names(names: Sequence[str] | None, n_features: int) -> list[str]:
    if names is None:
        return [f"x{j}" for j in range(n_features)]
    names = list(names)
    if len(names) != n_features or len(set(names)) != n_features or not all(isinstance(n, str) for n in names):
        raise DataError(f"feature_names must be {n_features} distinct strings, one per feature; got {names!r}")
    return names
