"""The data module at scale: the training order costs a few bytes per window, not a Python int each."""

from __future__ import annotations

import tracemalloc

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from torch.utils.data import DistributedSampler, RandomSampler

from mlfactory.data.datamodule import FactoryDataModule
from mlfactory.data.windows import PermutationSampler


def epochs(sampler, n: int = 3) -> list[np.ndarray]:
    return [np.fromiter(sampler, dtype=np.int64) for _ in range(n)]


def test_every_sample_once_per_epoch_in_a_new_order_reproduced_by_the_seed():
    data = range(10_000)
    torch.manual_seed(7)
    first = epochs(PermutationSampler(data))
    for order in first:
        np.testing.assert_array_equal(np.sort(order), np.arange(10_000))
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert not np.array_equal(first[0], np.arange(10_000))
    torch.manual_seed(7)
    np.testing.assert_array_equal(np.stack(epochs(PermutationSampler(data))), np.stack(first))
    own = [epochs(PermutationSampler(data, generator=torch.Generator().manual_seed(3)), 1)[0] for _ in range(2)]
    np.testing.assert_array_equal(own[0], own[1])


def bytes_held(sampler) -> int:
    """Bytes traced while the sampler is handing out its first index (its order for the epoch is alive)."""
    tracemalloc.start()
    try:
        iterator = iter(sampler)
        before = tracemalloc.get_traced_memory()[0]
        next(iterator)
        held = tracemalloc.get_traced_memory()[0] - before
        del iterator
    finally:
        tracemalloc.stop()
    return held


def bytes_per_sample(make) -> float:
    """How the bytes held grow with the number of samples (a constant, e.g. one chunk of indices, cancels)."""
    n = 100_000
    return (bytes_held(make(range(2 * n))) - bytes_held(make(range(n)))) / n


def test_the_order_holds_at_most_8_bytes_per_sample_where_random_sampler_holds_a_python_int():
    assert bytes_per_sample(RandomSampler) > 20  # the measurement sees torch's list of ints
    assert bytes_per_sample(PermutationSampler) <= 8


@pytest.fixture(scope="module")
def sequence_module(sample_dir) -> FactoryDataModule:
    dm = FactoryDataModule(data_dir=str(sample_dir), input_kind="sequence", seq_len=10, batch_size=64)
    dm.setup("fit")
    return dm


def test_the_training_loader_shuffles_every_window_once_and_evaluation_keeps_row_order(sequence_module):
    dm = sequence_module
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, PermutationSampler)
    L.seed_everything(1, verbose=False)
    rows = [torch.cat([batch["row"] for batch in loader]).numpy() for _ in range(2)]
    expected = dm.sample_rows("train")
    for order in rows:
        np.testing.assert_array_equal(np.sort(order), expected)
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[0], expected)
    L.seed_everything(1, verbose=False)
    np.testing.assert_array_equal(torch.cat([batch["row"] for batch in loader]).numpy(), rows[0])
    val = torch.cat([batch["row"] for batch in dm.val_dataloader()]).numpy()
    np.testing.assert_array_equal(val, dm.sample_rows("val"))


def test_under_ddp_lightning_gives_each_rank_a_disjoint_shuffled_shard(sequence_module):
    loader = sequence_module.train_dataloader()
    shards = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(loader, shuffle=True, overfit_batches=0, num_replicas=2, rank=rank)
        assert isinstance(sampler, DistributedSampler) and sampler.shuffle  # not a wrapper that lists our order
        shards.append(np.fromiter(sampler, dtype=np.int64))
    n = len(loader.dataset)
    assert len(np.intersect1d(shards[0], shards[1])) <= 1  # DistributedSampler pads an odd count with one repeat
    np.testing.assert_array_equal(np.union1d(shards[0], shards[1]), np.arange(n))
    assert not np.array_equal(shards[0], np.sort(shards[0]))


@pytest.mark.parametrize("interleave", [False, True])
def test_many_row_groups_read_in_column_blocks_give_the_same_arrays(sample_dir, tmp_path, interleave, monkeypatch):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlfactory.data import container as reader
    from mlfactory.data.container import SPLITS, TimeSeriesDataContainer, split_file

    for split in SPLITS:
        frame = pd.read_parquet(sample_dir / split_file(split))
        if interleave:
            frame = frame.sort_values(["datetime", "symbol"], kind="stable")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / split_file(split),
                       row_group_size=997)  # uneven groups, the last one short
    monkeypatch.setattr(reader, "READ_BLOCK_BYTES", 997 * 4 * 3)  # three columns per read
    expected = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=5)
    found = TimeSeriesDataContainer.from_parquet_dir(tmp_path, horizon=5)
    assert pq.ParquetFile(tmp_path / split_file("train")).metadata.num_row_groups > 3
    for split in SPLITS:
        a, b = expected.split(split), found.split(split)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        assert a.features.flags.c_contiguous and b.features.flags.c_contiguous


def test_running_out_of_memory_while_reading_is_one_line_naming_the_size(sample_dir, monkeypatch):
    import pyarrow.parquet as pq

    from mlfactory.data.container import TimeSeriesDataContainer
    from mlfactory.errors import DataError

    def exhausted(self, *args, **kwargs):
        raise MemoryError()  # what pyarrow or numpy raise when the process's memory runs out mid-read

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", exhausted)
    with pytest.raises(DataError, match=r"train_scaled.parquet: out of memory while reading its features \([\d,]+ "
                                        r"rows x \d+ float32 = [\d.]+ GiB") as error:
        TimeSeriesDataContainer.from_parquet_dir(sample_dir, 5)
    assert "rewrite the file" not in str(error.value)  # the file is fine: memory ran out
