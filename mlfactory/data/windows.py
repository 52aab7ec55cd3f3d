"""Datasets over a split's arrays that gather a whole batch with one index operation.

A ``DataLoader`` calls ``__getitems__`` with the batch's indices; the dataset gathers the whole
batch at once, so there is no Python call per sample. The sequence view never materialises the
(n, seq_len, n_features) tensor: a batch is gathered from the split's 2-D array by
``end_row + offsets``, and only that batch exists as a copy.

``__getitems__`` returns a :class:`GatheredBatch`: the list of samples torch's contract asks for, so a
plain ``DataLoader(dataset, batch_size=256)`` works with its default collation (one small stack per
batch), and at the same time the batched tensors, which :func:`collate_batch` hands over without any
per-sample work (the project's own loaders pass it).

A batch is ``{"x": features, "y": classes, "w": sample weights, "row": split row of the last bar}``;
for the multi-resolution view ``x`` is a dict of tensors, one per timeframe (``multires.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler

from mlfactory.data.split import SplitData
from mlfactory.errors import DataError

Batch = dict[str, torch.Tensor]


class GatheredBatch(Sequence):
    """A batch gathered in one operation, seen both ways a caller may want it.

    As a sequence it is the list of samples torch's ``__getitems__`` contract asks for
    (``batch[i]`` is sample ``i``, a dict of tensors), so torch's ``default_collate`` accepts it. By
    key it is the batched tensors themselves (``batch["x"]`` is (batch, ...)), which
    :func:`collate_batch` returns without touching a sample.
    """

    def __init__(self, tensors: Batch) -> None:
        self.tensors = tensors
        self._n = len(tensors["row"])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.tensors[key]
        if not -self._n <= key < self._n:
            raise IndexError(f"sample {key} of a batch of {self._n}")
        return {name: {k: v[key] for k, v in value.items()} if isinstance(value, dict) else value[key]
                for name, value in self.tensors.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self._n))

    def keys(self) -> Any:
        """The names of the batched tensors (``x``, ``y``, ``w``, ``row``)."""
        return self.tensors.keys()

    def items(self) -> Any:
        """``(name, batched tensor)`` pairs."""
        return self.tensors.items()


def collate_batch(batch: GatheredBatch | Batch) -> Batch:
    """The batch was already gathered by ``__getitems__``: its tensors, handed over without per-sample work."""
    return batch.tensors if isinstance(batch, GatheredBatch) else batch


# sample indices handed to the loader at a time: bounds the Python ints alive at once
_SAMPLER_CHUNK = 65_536


class PermutationSampler(RandomSampler):
    """Every sample once per epoch, in a new random order each epoch, held as one numpy array.

    torch's ``RandomSampler`` holds ``torch.randperm(n).tolist()``, a Python int per sample (~36 B): at
    ten million windows that is ~0.36 GB beside the features. This sampler holds the order as int32 (int64
    past 2**31 samples), 4-8 B per sample, and hands the indices over in chunks of 65 536.

    Each epoch's order is seeded by one number drawn from ``generator`` (unset: torch's global generator,
    as ``RandomSampler`` does), so ``lightning.seed_everything`` makes the orders reproducible, and each
    epoch draws a new one. It subclasses ``RandomSampler`` so that Lightning, under DDP with
    ``use_distributed_sampler`` (the default), replaces it by a shuffled ``DistributedSampler``: each
    rank gets a disjoint shard, exactly as with ``shuffle=True``.

    >>> sampler = PermutationSampler(range(5), generator=torch.Generator().manual_seed(0))
    >>> sorted(sampler), len(sampler)
    ([0, 1, 2, 3, 4], 5)
    """

    def __init__(self, data_source: Sized, generator: torch.Generator | None = None) -> None:
        super().__init__(data_source, generator=generator)

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        order = np.arange(n, dtype=np.int32 if n <= np.iinfo(np.int32).max else np.int64)
        np.random.default_rng(seed & (2**63 - 1)).shuffle(order)
        for start in range(0, n, _SAMPLER_CHUNK):
            yield from order[start : start + _SAMPLER_CHUNK].tolist()


class _RowDataset(Dataset):
    """Samples identified by the split row of their last bar."""

    def __init__(self, split: SplitData, rows: np.ndarray) -> None:
        self.split = split
        self._rows = rows
        self.rows = torch.from_numpy(rows)  # the same memory, for callers that want a tensor

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def samples(split: SplitData, valid: np.ndarray, rows: np.ndarray | None, lacking: str, empty: str) -> np.ndarray:
        """``rows`` when given (each must be ``valid``), else every ``valid`` row; errors say what is ``lacking``."""
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if not np.isin(rows, valid).all():
                raise DataError(f"some requested rows of the {split.name} split {lacking}")
            valid = rows
        if len(valid) == 0:
            raise DataError(empty)
        return valid

    def __getitems__(self, indices: Sequence[int]) -> GatheredBatch:
        # gathered by numpy and wrapped without a copy: numpy's batch buffers go back to the
        # allocator at once, where torch's cached blocks inflated peak memory (docs/performance.md)
        rows = self._rows[np.asarray(indices, dtype=np.int64)]
        split = self.split
        x = self._gather(rows)
        return GatheredBatch({
            "x": {k: torch.from_numpy(v) for k, v in x.items()} if isinstance(x, dict) else torch.from_numpy(x),
            "y": torch.from_numpy(split.labels[rows]),
            "w": torch.from_numpy(split.weights[rows]),
            "row": torch.from_numpy(rows),
        })

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def _gather(self, rows: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        raise NotImplementedError


class TabularDataset(_RowDataset):
    """Rows of a split as samples (all rows unless ``rows`` is given): ``x`` is (batch, n_features)."""

    def __init__(self, split: SplitData, rows: np.ndarray | None = None) -> None:
        super().__init__(split, np.arange(len(split), dtype=np.int64) if rows is None else np.asarray(rows, np.int64))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        return self.split.features[rows]


class SequenceDataset(_RowDataset):
    """Windows of ``seq_len`` consecutive rows of one symbol: ``x`` is (batch, seq_len, n_features).

    Sample ``i`` is the window ending at row ``rows[i]``. Rows without ``seq_len - 1`` earlier rows
    of the same symbol have no sample, so a window never crosses a symbol or split boundary. ``rows``
    restricts the samples to some of the valid window ends (ensembles and cross-validation use it).
    """

    def __init__(self, split: SplitData, seq_len: int, rows: np.ndarray | None = None) -> None:
        if seq_len < 1:
            raise DataError(f"seq_len must be at least 1, got {seq_len}")
        end_rows = self.samples(
            split, split.window_end_rows(seq_len), rows, f"have fewer than {seq_len} rows of history",
            f"the {split.name} split has no symbol with {seq_len} rows, so it yields no window of "
            f"seq_len={seq_len}; lower --data.seq_len or use more data",
        )
        super().__init__(split, end_rows)
        self.seq_len = seq_len
        self._offsets = np.arange(1 - seq_len, 1, dtype=np.int64)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        return self.split.features[rows[:, None] + self._offsets]

    def window(self, index: int) -> Any:
        """The window of sample ``index`` as a view of the split array (no copy)."""
        end = int(self._rows[index])
        return self.split.features[end - self.seq_len + 1 : end + 1]
