"""The input view: which dataset a model reads, which rows of a split are its samples, and their shape.

A model's ``input_kind`` names its view; :class:`InputView` turns that name into an object once, so
the data module, ensembles, permutation importance and bundles ask the view instead of comparing
strings. ``seq_len`` is owned by the data module and reaches models only through the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from mlfactory.errors import ModelError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from mlfactory.data.container import TimeSeriesDataContainer
    from mlfactory.data.split import SplitData


@dataclass(frozen=True)
class InputView:
    """One of the views a :class:`~mlfactory.data.datamodule.FactoryDataModule` serves.

    Args:
        kind: ``tabular`` (one feature row per sample), ``sequence`` (a window of ``seq_len`` rows of
            one symbol ending at the sample's row) or ``multires`` (raw-bar windows per timeframe).
        seq_len: rows per window (``sequence`` only).
        timeframes, lookback, span: the multi-resolution windows (``multires`` only; docs/data.md).

    >>> InputView.of("sequence", 30).input_shape(12)
    (30, 12)
    >>> InputView.of("tabular", 30).input_shape(12), InputView.of("tabular").reads_feature_columns
    ((12,), True)
    """

    kind: str
    seq_len: int | None = None
    timeframes: tuple[str, ...] = ()
    lookback: int | None = None
    span: str = "8h"

    KINDS: ClassVar[tuple[str, ...]] = ("tabular", "sequence", "multires")

    @classmethod
    def of(cls, kind: str, seq_len: int | None = None, timeframes: tuple[str, ...] = (),
           lookback: int | None = None, span: str = "8h", reader: str = "the model") -> "InputView":
        """The view of ``kind``; ``seq_len`` is kept only where windows are read. Refuses unknown kinds."""
        if kind not in cls.KINDS:
            raise ModelError(f"{reader} asks for input kind {kind!r}, which FactoryDataModule does not serve yet")
        return cls(kind, seq_len if kind == "sequence" else None, tuple(timeframes) if kind == "multires" else (),
                   lookback, span)

    @property
    def reads_feature_columns(self) -> bool:
        """True when the input is the split's feature columns (tabular rows or windows of them)."""
        return self.kind != "multires"

    @property
    def windowed(self) -> bool:
        """True when a sample is a window of ``seq_len`` rows."""
        return self.kind == "sequence"

    def input_shape(self, n_features: int) -> tuple[int, ...] | None:
        """One sample's shape, without the batch dimension; None for the multi-resolution dict of windows."""
        if self.kind == "tabular":
            return (n_features,)
        if self.kind == "sequence":
            return (int(self.seq_len), n_features)
        return None

    def valid_rows(self, split: "SplitData") -> np.ndarray:
        """The rows of ``split`` that are samples of this view (e.g. rows with a full window)."""
        if self.kind == "sequence":
            return split.window_end_rows(int(self.seq_len))
        if self.kind == "tabular":
            return np.arange(len(split), dtype=np.int64)
        raise ModelError("the rows of a multi-resolution view come from its dataset; use dataset(...).rows")

    def dataset(self, container: "TimeSeriesDataContainer", split: str, rows: np.ndarray | None = None,
                split_data: "SplitData | None" = None) -> "Dataset":
        """The dataset of ``split`` in this view, over ``rows`` (default: every valid row).

        ``split_data`` replaces the container's split (e.g. with a feature column shuffled).
        """
        from mlfactory.data.multires import MultiResolutionDataset
        from mlfactory.data.windows import SequenceDataset, TabularDataset

        data = split_data if split_data is not None else container.split(split)
        if self.kind == "sequence":
            return SequenceDataset(data, int(self.seq_len), rows)
        if self.kind == "tabular":
            return TabularDataset(data, rows)
        bars = container.get_multi_resolution_bars(split, list(self.timeframes), self.lookback, self.span).bars
        return MultiResolutionDataset(data, bars, rows)
