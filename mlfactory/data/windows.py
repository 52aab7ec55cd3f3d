"""Datasets over a split's arrays that gather a whole batch with one index operation.

A ``DataLoader`` calls ``__getitems__`` with the batch's indices; the dataset answers with one
dictionary of batched tensors, so there is no Python call per sample and no collation step. The
sequence view never materialises the (n, seq_len, n_features) tensor: a batch is gathered from the
split's 2-D array by ``end_row + offsets``, and only that batch exists as a copy.

A batch is ``{"x": features, "y": classes, "w": sample weights, "row": split row of the last bar}``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mlfactory.data.container import SplitData
from mlfactory.errors import DataError

Batch = dict[str, torch.Tensor]


def collate_batch(batch: Batch) -> Batch:
    """The batch is already collated by ``__getitems__``; the DataLoader hands it over untouched."""
    return batch


class _RowDataset(Dataset):
    """Samples identified by the split row of their last bar."""

    def __init__(self, split: SplitData, rows: np.ndarray) -> None:
        self.split = split
        self.rows = torch.from_numpy(rows)
        self._features = torch.from_numpy(split.features)
        self._labels = torch.from_numpy(split.labels)
        self._weights = torch.from_numpy(split.weights)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        rows = self.rows[torch.as_tensor(indices, dtype=torch.long)]
        return {"x": self._gather(rows), "y": self._labels[rows], "w": self._weights[rows], "row": rows}

    def __getitem__(self, index: int) -> Batch:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TabularDataset(_RowDataset):
    """Rows of a split as samples (all rows unless ``rows`` is given): ``x`` is (batch, n_features)."""

    def __init__(self, split: SplitData, rows: np.ndarray | None = None) -> None:
        super().__init__(split, np.arange(len(split), dtype=np.int64) if rows is None else np.asarray(rows, np.int64))

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        return self._features[rows]


class SequenceDataset(_RowDataset):
    """Windows of ``seq_len`` consecutive rows of one symbol: ``x`` is (batch, seq_len, n_features).

    Sample ``i`` is the window ending at row ``rows[i]``. Rows without ``seq_len - 1`` earlier rows
    of the same symbol have no sample, so a window never crosses a symbol or split boundary. ``rows``
    restricts the samples to some of the valid window ends (ensembles and cross-validation use it).
    """

    def __init__(self, split: SplitData, seq_len: int, rows: np.ndarray | None = None) -> None:
        if seq_len < 1:
            raise DataError(f"seq_len must be at least 1, got {seq_len}")
        end_rows = split.window_end_rows(seq_len)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if not np.isin(rows, end_rows).all():
                raise DataError(f"some requested rows of the {split.name} split have fewer than {seq_len} rows of history")
            end_rows = rows
        if len(end_rows) == 0:
            raise DataError(
                f"the {split.name} split has no symbol with {seq_len} rows, so it yields no window of "
                f"seq_len={seq_len}; lower --data.seq_len or use more data"
            )
        super().__init__(split, end_rows)
        self.seq_len = seq_len
        self._offsets = torch.arange(1 - seq_len, 1, dtype=torch.long)

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        return self._features[rows[:, None] + self._offsets]

    def window(self, index: int) -> Any:
        """The window of sample ``index`` as a view of the split array (no copy)."""
        end = int(self.rows[index])
        return self.split.features[end - self.seq_len + 1 : end + 1]
