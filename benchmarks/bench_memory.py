"""Benchmark 1, window memory: peak memory added by building and iterating the training sequence dataset.

Target: at most 1.25 x the training split's 2-D float32 array (``features.nbytes``, 34.3 MiB).

Method, in a fresh process per measurement (1 with ``--quick``, else 3; the table shows the median):
``FactoryDataModule(seq_len=60, batch_size=256)`` reads the split directory (``setup``, not
measured), and a few batches of the val loader run so that DataLoader's lazy imports and torch's
first allocations are not counted. Then the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs`` = 5 sets VmHWM to the current RSS) and the measured section runs:
``train_dataloader()`` (which builds the ``SequenceDataset``) and one shuffled epoch over it, every
batch's windows summed (touched) and dropped. Added memory = VmHWM after - VmRSS before. RSS counts
torch's allocations, which tracemalloc does not see.

RSS also counts what the C allocator keeps after ``free``. glibc raises its mmap threshold to the
size of the first large block freed (up to 32 MiB), after which each 10.5 MiB batch is carved from
the heap and freed blocks may stay mapped, so the default figure varies from process to process.
Measured beside it, in one more process started with that threshold fixed at 1 MiB
(``MALLOC_MMAP_THRESHOLD_=1048576``; every batch is then mapped and unmapped, so RSS is live
memory): the same mlfactory loop, the bare-torch equivalent (``features[rows[perm][:, None] +
offsets]`` per batch: the floor for windows gathered on the fly) and one pass of the evaluation
loader (4 x batch_size windows per batch; no target).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

from bench_common import Report, Row, child_main, median, proc_status_kib, reset_peak_rss, spread
from data import HORIZON, SEQ_LEN, bench_split_dir

BATCH_SIZE = 256
TARGET = 1.25
FIXED_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # glibc: blocks >= 1 MiB are mmapped, unmapped on free


def run(quick: bool, threads: int) -> Report:
    def child(env: dict[str, str]) -> dict:
        out = subprocess.run([sys.executable, __file__, "--one", "--threads", str(threads)], check=True,
                             capture_output=True, text=True, env={**os.environ, **env})
        return json.loads(out.stdout.strip().splitlines()[-1])

    results = [child({}) for _ in range(1 if quick else 3)]
    fixed_run = child(FIXED_THRESHOLD)  # deterministic: one process is enough
    first = results[0]
    nbytes, mib = first["nbytes"], 2**20
    batch_mib = BATCH_SIZE * SEQ_LEN * first["n_features"] * 4 / mib
    n_batches = -(-first["windows"] // BATCH_SIZE)

    def ratios(key: str) -> list[float]:
        return [r[key] / nbytes for r in results]

    report = Report()
    default = ratios("default")
    report.rows.append(Row(
        "memory", "train windows: peak RSS added / features.nbytes", median(default), "<=", TARGET,
        detail=f"{spread(default, 2)} over fresh processes; {median([r['default'] for r in results]) / mib:.1f} MiB "
        f"over {nbytes / mib:.1f} MiB; one batch of windows = {batch_mib:.1f} MiB",
    ))
    for key, label in (("default", "train windows, mmap threshold fixed"),
                       ("bare", "bare torch gather loop, mmap threshold fixed"),
                       ("eval", f"eval loader (batch {4 * BATCH_SIZE}), mmap threshold fixed")):
        report.rows.append(Row("memory", f"{label}: added / features.nbytes", fixed_run[key] / nbytes,
                               detail=f"{fixed_run[key] / mib:.1f} MiB (one process)"))
    fixed = fixed_run["default"]
    report.notes.append(
        f"**Window memory.** A materialised (n, seq_len, n_features) tensor of the training split would take "
        f"{first['windows'] * SEQ_LEN * first['n_features'] * 4 / mib:,.0f} MiB "
        f"({first['windows'] * SEQ_LEN / first['rows']:.0f} x the split array); no such tensor is built. "
        + f"With the allocator's mmap threshold fixed at 1 MiB, building the dataset and iterating one epoch adds "
        f"{fixed / mib:.1f} MiB = {fixed / (batch_mib * mib):.1f} batches of windows (the batch being gathered "
        f"and the one the loop still holds); the bare torch loop adds {fixed_run['bare'] / mib:.1f} MiB. "
        + "Under glibc's default settings the peak was "
        + ", ".join(f"{r['default'] / mib:.0f}" for r in results)
        + f" MiB in {len(results)} fresh process(es); the excess over the live batches is freed batch blocks that "
        "the allocator keeps mapped. Setting "
        "`MALLOC_MMAP_THRESHOLD_=1048576` in the environment removes that variation (each batch is then "
        f"mapped and unmapped, which costs page faults: one epoch of gathering took "
        f"{fixed_run['seconds']:.1f} s of CPU instead of {median([r['seconds'] for r in results]):.1f} s, "
        f"{(fixed_run['seconds'] - median([r['seconds'] for r in results])) / n_batches * 1000:.1f} ms per batch)."
    )
    return report


def _peak_added(make_loader) -> tuple[float, int, float]:
    """(peak RSS added in bytes, samples seen, CPU seconds) while building a loader and iterating it once."""
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS counter (/proc/self/clear_refs); this benchmark needs Linux")
    before = proc_status_kib("VmRSS")
    start = time.process_time()
    loader = make_loader()
    seen, checksum = 0, 0.0
    for batch in loader:
        checksum += float(batch["x"].sum())  # touch every gathered value
        seen += len(batch["y"])
    seconds = time.process_time() - start
    peak = proc_status_kib("VmHWM")
    del loader
    return (peak - before) * 1024.0, seen, seconds


def _bare_loader(data):
    """The bare torch equivalent of the training loader: one gather per batch, no Dataset, no DataLoader."""
    import torch

    split = data.container.split("train")
    features, labels = torch.from_numpy(split.features), torch.from_numpy(split.labels)
    rows = torch.from_numpy(split.window_end_rows(SEQ_LEN))
    offsets = torch.arange(1 - SEQ_LEN, 1)

    def batches():
        perm = torch.randperm(len(rows))
        for start in range(0, len(rows), BATCH_SIZE):
            end_rows = rows[perm[start : start + BATCH_SIZE]]
            yield {"x": features[end_rows[:, None] + offsets], "y": labels[end_rows]}

    return batches()


def one(threads: int) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from mlfactory.data.datamodule import FactoryDataModule

    torch.set_num_threads(threads)
    data = FactoryDataModule(
        data_dir=str(bench_split_dir()), horizon=HORIZON, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, input_kind="sequence"
    )
    data.setup("fit")
    split = data.container.split("train")
    loader = iter(data.val_dataloader())
    for _ in range(3):  # warm-up: imports and first allocations
        next(loader)
    del loader
    result = {"nbytes": split.features.nbytes, "rows": len(split), "n_features": split.features.shape[1]}
    result["default"], result["windows"], result["seconds"] = _peak_added(data.train_dataloader)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # freed batches are unmapped: later measurements start clean
        result["bare"] = _peak_added(lambda: _bare_loader(data))[0]
        result["eval"] = _peak_added(lambda: data.eval_loader("train"))[0]
    return result


if __name__ == "__main__":
    if "--one" in sys.argv:
        threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
        print(json.dumps(one(threads)))
    else:
        child_main(run)
