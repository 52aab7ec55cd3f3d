"""Peers side by side: one windowed classification through mlfactory and through its peers' own data paths.

The task, the same for every side: the training split of ``n`` rows x 180 float32 features (the
benchmark data of ``benchmarks/data.py``, tiled to ``n`` rows, each copy its own symbols so no window
crosses copies), windows of ``seq_len`` 60 rows ending at every row that has 59 rows of its own
symbol before it, the triple-barrier label of ``horizon`` 5 (3 classes) with its sample weight, the
network of mlfactory's ``lstm`` (LSTM 180 -> 64, 2 layers, dropout 0.1, LayerNorm -> Dropout ->
Linear(64, 3) on the last step), AdamW (lr 1e-3, weight decay 1e-4), batch 256, sample-weighted
cross-entropy, ``torch.set_num_threads(1)``.

The sides:

- **mlfactory**: ``FactoryDataModule(input_kind="sequence")`` reads the split directory (load),
  ``train_dataloader()`` builds the lazy ``SequenceDataset`` (build), ``Trainer.fit(LSTMModel)``
  trains (Lightning, no logger, checkpoint, progress bar or validation), in the project's ``.venv``.
- **pytorch-forecasting**: the split's columns read into a pandas DataFrame (load, with a
  ``time_idx`` per symbol and the label as a category), ``TimeSeriesDataSet`` (59 encoder rows + 1
  decoder row = the same 60-row window; the features as known reals, unscaled; the label as a
  categorical target through its ``NaNLabelEncoder``; the weight column as ``weight``) and
  ``to_dataloader(train=True)`` (build), then the same network trained by a plain loop on
  ``cat(encoder_cont, decoder_cont)`` (its own models are forecasters with regression or
  distribution losses: none takes a 3-class target through an LSTM).
- **tsai**: ``SlidingWindow`` over the 2-D split, ``get_ts_dls`` and tsai's own ``LSTM`` (hidden 64,
  2 layers) through a fastai ``Learner`` (the library's documented path). On this machine tsai does
  not import (fastai imports torchvision, and PyPI's torchvision does not load beside the CPU build
  of torch 2.13.0); the side then reports the import error as its result.
- **darts** and **neuralforecast** are not run: see ``NOT_RUN`` (their APIs do not allow the task).

Beside them, measurements of the changes proposed for mlfactory's container (docs/performance.md,
"Peers"), patched into the measuring process only: **mlfactory-released** (the Arrow memory pool's
freed pages released after the read), **mlfactory-fixed** (files read a row group at a time, plus the
release), and the reader alone: **read-whole** (``pq.read_table`` then the columns copied, as the
container reads) against **read-pieces** (the float32 array filled one row group at a time).

Each side's measurement runs in a fresh process (``--child``) under ``RLIMIT_AS`` (``--mem-gib``, 10
GiB by default, so the shared machine never swaps) and a timeout (``--timeout``); a side that runs out
of either is reported as such. Inside the child, after imports and the model are built:

- **load**: the 2-D split into the side's input form; seconds and peak RSS added;
- **build**: the training dataset and loader from the loaded split; seconds, peak RSS added
  (counted from before the load: the split itself is 1.0 x), and RSS held afterwards;
- **train**: ``--batches`` training batches after one warm-up batch: samples per second of process
  CPU time (one thread: the work done, nearly blind to neighbours' load) and of wall time; the peak
  RSS (again from before the load); the first batch's shapes and loss, and the mean loss; then,
  outside the stage, the side's loader alone over ``--batches`` batches (CPU ms per batch).

Before those, each child runs its whole path once, unmeasured, on a 2,000-row split (imports and
first allocations are paid there).

Peaks are the kernel's high-water mark (VmHWM), reset between stages through
``/proc/self/clear_refs``. Ratios are to the 2-D split's feature bytes (``n x 180 x 4``).

Setup (once; peers never enter the project's dependencies)::

    .venv/bin/python benchmarks/peers.py --setup      # venvs under /tmp from the pinned files

Run (one measurement at a time; the table is printed as markdown and kept as JSON)::

    nice -n 10 .venv/bin/python benchmarks/peers.py --rows 50000 500000 2000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEQ_LEN = 60
HORIZON = 5
BATCH_SIZE = 256
HIDDEN, LAYERS, DROPOUT = 64, 2, 0.1
LR, WEIGHT_DECAY = 1e-3, 1e-4
SIDES = ("mlfactory", "mlfactory-released", "mlfactory-fixed", "pytorch-forecasting", "tsai", "read-whole", "read-pieces")
VENVS = {  # side -> (default venv, requirements file); mlfactory runs in the interpreter that runs this script
    "pytorch-forecasting": (Path("/tmp/mlfactory-peers-venv"), HERE / "peers-requirements.txt"),
    "tsai": (Path("/tmp/mlfactory-peers-tsai-venv"), HERE / "peers-tsai-requirements.txt"),
}
NOT_RUN = {
    "darts": "its torch models (RNNModel, BlockRNNModel, ...) are forecasters: they predict the target series' "
    "future values with a regression loss or a likelihood over reals; its classification models "
    "(SKLearnClassifierModel, XGB/LightGBM/CatBoostClassifierModel) are tabular models on lagged values, "
    "not a network over a 60-row window. There is no LSTM classifier with sample weights to train.",
    "neuralforecast": "every model forecasts the real-valued target 'y' of each series with point or "
    "distribution losses (MAE, MSE, DistributionLoss, ...); there is no loss for a 3-class label nor a "
    "per-sample weight, so the task cannot be stated in its API.",
}
DEFAULT_MEM_GIB = 10.0  # RLIMIT_AS of a measurement's process: the shared 24 GiB machine must never swap
PEERS_DATA_VERSION = "v2"  # v2: written by data.tiled_split_dir (val and test symbols carry "-t000" too)
PEERS_EVAL_ROWS = 2_000  # rows of the val and test splits
WARM_NAME, WARM_ROWS = f"peers-warm-{PEERS_DATA_VERSION}", 2_000  # the split each child runs once first, unmeasured


# --------------------------------------------------------------------------- the measured child


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _Stage:
    """Seconds (wall and CPU) and RSS (peak and held, bytes above ``base``) of one stage of a child."""

    def __init__(self, name: str, base_kib: int) -> None:
        self.name, self.base = name, base_kib

    def __enter__(self) -> "_Stage":
        gc.collect()
        _reset_peak()
        self.start = _clock()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu = (b - a for a, b in zip(self.start, _clock()))
        peak = _status_kib("VmHWM")
        gc.collect()
        self.result = {"wall_s": wall, "cpu_s": cpu, "peak_bytes": (peak - self.base) * 1024,
                       "held_bytes": (_status_kib("VmRSS") - self.base) * 1024}


def _emit(record: dict) -> None:
    print("PEERS " + json.dumps(record), flush=True)  # one line per stage: a later crash keeps the earlier ones


def _quiet(record: dict) -> None:
    """The warm-up pass reports nothing."""


def _network(n_features: int):
    """The network of mlfactory's lstm (``RecurrentClassifier`` at its defaults), for sides that train a bare loop."""
    import torch
    from torch import nn

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(n_features, HIDDEN, num_layers=LAYERS, dropout=DROPOUT, batch_first=True)
            self.head = nn.Sequential(nn.LayerNorm(HIDDEN), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    torch.manual_seed(0)
    return LSTMClassifier()


def _train_loop(net, batches, n_batches: int) -> dict:
    """A plain loop over ``(x, y, w)`` batches: one warm-up batch, then ``n_batches`` timed ones."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    net.train()
    losses, shapes, marks = [], None, []
    for i, (x, y, w) in enumerate(batches):
        if i == 0:
            shapes = {"x": list(x.shape), "y": list(y.shape), "w": list(w.shape)}
        loss = (F.cross_entropy(net(x), y, reduction="none") * w).sum() / w.sum().clamp_min(1e-12)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        marks.append(_clock())
        if i == n_batches:
            break
    return _rates(marks, losses, shapes)


def _rates(marks: list[tuple[float, float]], losses: list[float], shapes: dict | None) -> dict:
    timed = len(marks) - 1  # the first batch is warm-up
    if timed < 1:
        raise RuntimeError(f"only {len(marks)} training batch(es) ran; the split is too small for a timed batch")
    wall, cpu = (b - a for a, b in zip(marks[0], marks[-1]))
    return {"batches": timed, "samples_per_s_cpu": timed * BATCH_SIZE / cpu, "samples_per_s_wall": timed * BATCH_SIZE / wall,
            "first_loss": losses[0], "mean_loss": sum(losses) / len(losses), "shapes": shapes}


def child_mlfactory(data_dir: Path, n_batches: int, emit: Callable[[dict], None] = _emit, release: bool = False,
                    by_row_group: bool = False) -> None:
    """mlfactory's side: FactoryDataModule's lazy windows and the registered lstm through a Lightning Trainer.

    The two changes proposed for the container (docs/performance.md, "Peers"), tried here by patching
    this process only: ``release``: after the splits are read, hand the Arrow memory pool's freed pages
    back to the system (``pyarrow.default_memory_pool().release_unused()``); ``by_row_group``: read each
    file one row group at a time (``ParquetFile.read_row_group``) instead of ``pq.read_table``.
    """
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from mlfactory.data.datamodule import FactoryDataModule
    from mlfactory.models.neural.lstm import LSTMModel

    if by_row_group:
        import mlfactory.data.container as container

        container._read_table = _read_by_row_group
    torch.manual_seed(0)
    model = LSTMModel(lr_scheduler="none")
    base = _status_kib("VmRSS")
    data = FactoryDataModule(data_dir=str(data_dir), horizon=HORIZON, seq_len=SEQ_LEN, batch_size=BATCH_SIZE,
                             input_kind="sequence", threads=1)
    with _Stage("load", base) as stage:
        data.setup("fit")
        if release:
            import pyarrow as pa

            pa.default_memory_pool().release_unused()
    emit({"stage": "load", **stage.result})
    with _Stage("build", base) as stage:
        loader = data.train_dataloader()
    emit({"stage": "build", **stage.result, "windows": len(loader.dataset)})
    del loader

    class Clock(Callback):
        def __init__(self) -> None:
            self.marks, self.losses, self.shapes = [], [], None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.shapes is None:
                self.shapes = {k: list(batch[k].shape) for k in ("x", "y", "w")}
            self.losses.append(float(outputs["loss"]))
            self.marks.append(_clock())

    clock = Clock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=n_batches + 1,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
                        default_root_dir="/tmp")
    with _Stage("train", base) as stage:
        trainer.fit(model, datamodule=data)
    emit({"stage": "train", **stage.result, **_rates(clock.marks, clock.losses, clock.shapes),
          **_loader_ms(data.train_dataloader(), n_batches)})


def _loader_ms(batches, n_batches: int) -> dict:
    """CPU milliseconds per batch of a loader alone (no training), over ``n_batches`` after one warm-up batch."""
    iterator = iter(batches)
    next(iterator)
    start = time.process_time()
    for _ in range(n_batches):
        next(iterator)
    return {"loader_ms_cpu": (time.process_time() - start) * 1000 / n_batches}


def _read_by_row_group(path: Path):
    """The parquet file as one table, read a row group at a time (the chunks are kept, not concatenated)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    return pa.concat_tables([file.read_row_group(i) for i in range(file.num_row_groups)])


def _read_split(data_dir: Path, info: dict):
    """The training split's feature, label, weight and symbol columns as a pyarrow table."""
    import pyarrow.parquet as pq

    columns = [*info["features"], "symbol", info["label"], info["weight"]]
    return pq.read_table(data_dir / "train_scaled.parquet", columns=columns)


def child_pytorch_forecasting(data_dir: Path, n_batches: int, emit: Callable[[dict], None] = _emit) -> None:
    """pytorch-forecasting's side: a DataFrame, TimeSeriesDataSet and its DataLoader; the lstm's network in a plain loop."""
    import torch

    torch.set_num_threads(1)
    import pandas as pd
    from pytorch_forecasting import TimeSeriesDataSet
    from pytorch_forecasting.data.encoders import NaNLabelEncoder

    info = json.loads((data_dir / "peers.json").read_text())
    features = info["features"]
    net = _network(len(features))
    base = _status_kib("VmRSS")
    with _Stage("load", base) as stage:
        frame = _read_split(data_dir, info).to_pandas()
        frame["time_idx"] = frame.groupby("symbol", sort=False).cumcount()
        frame["class"] = pd.Categorical(frame[info["label"]].map({-1: "down", 0: "neutral", 1: "up"}).astype(str))
    emit({"stage": "load", **stage.result})
    with _Stage("build", base) as stage:
        dataset = TimeSeriesDataSet(
            frame, time_idx="time_idx", target="class", group_ids=["symbol"], weight=info["weight"],
            max_encoder_length=SEQ_LEN - 1, min_encoder_length=SEQ_LEN - 1, max_prediction_length=1,
            min_prediction_length=1, time_varying_known_reals=features, scalers={f: None for f in features},
            target_normalizer=NaNLabelEncoder(), add_relative_time_idx=False, add_target_scales=False,
            add_encoder_length=False,
        )
        loader = dataset.to_dataloader(train=True, batch_size=BATCH_SIZE, num_workers=0)
        del frame  # the dataset holds its own copy; the best case for this side is to drop the source frame
    emit({"stage": "build", **stage.result, "windows": len(dataset)})

    def batches():
        for x, (y, w) in loader:
            yield torch.cat([x["encoder_cont"], x["decoder_cont"]], dim=1), y[:, -1], w[:, -1]

    with _Stage("train", base) as stage:
        rates = _train_loop(net, batches(), n_batches)
    emit({"stage": "train", **stage.result, **rates, **_loader_ms(batches(), n_batches)})


def child_tsai(data_dir: Path, n_batches: int, emit: Callable[[dict], None] = _emit) -> None:
    """tsai's side: SlidingWindow's materialised windows, get_ts_dls and tsai's LSTM in a fastai Learner.

    Written to tsai's documented API; on this machine it stops at the import (see the module docstring).
    """
    import torch

    torch.set_num_threads(1)
    from fastai.callback.core import Callback, CancelFitException
    from fastai.learner import Learner
    from tsai.data.core import get_ts_dls
    from tsai.data.preparation import SlidingWindow
    from tsai.models.RNN import LSTM

    import numpy as np

    info = json.loads((data_dir / "peers.json").read_text())
    base = _status_kib("VmRSS")
    with _Stage("load", base) as stage:
        table = _read_split(data_dir, info)
        split = np.empty((table.num_rows, len(info["features"])), dtype=np.float32)
        for j, name in enumerate(info["features"]):
            split[:, j] = table.column(name).to_numpy()
        labels = table.column(info["label"]).to_numpy() + 1
        symbols = table.column("symbol").to_numpy(zero_copy_only=False)
        del table
    emit({"stage": "load", **stage.result})
    with _Stage("build", base) as stage:
        xs, ys = [], []
        for symbol in dict.fromkeys(symbols):  # one series per symbol: no window crosses two
            rows = np.flatnonzero(symbols == symbol)
            x, _ = SlidingWindow(SEQ_LEN, get_x=list(range(split.shape[1])), horizon=0, seq_first=True)(split[rows])
            xs.append(x)  # (windows, features, seq_len)
            ys.append(labels[rows][SEQ_LEN - 1 :])
        x, y = np.concatenate(xs), np.concatenate(ys)
        del xs, ys
        dls = get_ts_dls(x, y, splits=(list(range(len(y))), []), bs=BATCH_SIZE, shuffle_train=True)
    emit({"stage": "build", **stage.result, "windows": len(y)})

    class Clock(Callback):
        order = 100

        def before_fit(self) -> None:
            self.marks, self.losses, self.shapes = [], [], None

        def after_batch(self) -> None:
            if self.shapes is None:
                self.shapes = {"x": list(self.learn.xb[0].shape), "y": list(self.learn.yb[0].shape)}
            self.losses.append(float(self.learn.loss))
            self.marks.append(_clock())
            if len(self.marks) > n_batches:
                raise CancelFitException()

    torch.manual_seed(0)
    model = LSTM(len(info["features"]), 3, hidden_size=HIDDEN, n_layers=LAYERS, rnn_dropout=DROPOUT, fc_dropout=DROPOUT)
    clock = Clock()
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), opt_func=_fastai_adamw(), lr=LR,
                    wd=WEIGHT_DECAY, cbs=[clock])
    with _Stage("train", base) as stage:
        learn.fit(1)
    emit({"stage": "train", **stage.result, **_rates(clock.marks, clock.losses, clock.shapes),
           "note": "tsai's LSTM, unweighted cross-entropy (get_ts_dls takes no sample weights)"})


def _fastai_adamw():
    from fastai.optimizer import Adam

    return partial(Adam, decouple_wd=True)


def child_read(data_dir: Path, n_batches: int, emit: Callable[[dict], None] = _emit, pieces: bool = False) -> None:
    """The feature array alone, read two ways (load stage only): the reader's part of the container's peak.

    ``pieces=False``: ``pq.read_table`` of the whole file, then each column copied into a float32
    array, as the container does. ``pieces=True``: the float32 array allocated first and filled one
    row group at a time, each row group dropped once copied, the Arrow pool released at the end:
    the reader proposed for the container. ``n_batches`` is unused.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = json.loads((data_dir / "peers.json").read_text())
    features, path = info["features"], data_dir / "train_scaled.parquet"
    base = _status_kib("VmRSS")
    with _Stage("load", base) as stage:
        if pieces:
            file = pq.ParquetFile(path)
            array = np.empty((file.metadata.num_rows, len(features)), dtype=np.float32)
            start = 0
            for i in range(file.num_row_groups):
                group = file.read_row_group(i, columns=features)
                for j, name in enumerate(features):
                    array[start : start + group.num_rows, j] = group.column(name).to_numpy()
                start += group.num_rows
                del group
        else:
            table = pq.read_table(path)
            array = np.empty((table.num_rows, len(features)), dtype=np.float32)
            for j, name in enumerate(features):
                array[:, j] = table.column(name).to_numpy()
            del table
        pa.default_memory_pool().release_unused()
    emit({"stage": "load", **stage.result})


CHILDREN = {"mlfactory": child_mlfactory, "mlfactory-released": partial(child_mlfactory, release=True),
            "mlfactory-fixed": partial(child_mlfactory, release=True, by_row_group=True),
            "pytorch-forecasting": child_pytorch_forecasting, "tsai": child_tsai,
            "read-whole": child_read, "read-pieces": partial(child_read, pieces=True)}


# --------------------------------------------------------------------------- data and orchestration


def split_dir(rows: int, root: Path, name: str | None = None) -> Path:
    """A split directory whose training split is the 50,000-row benchmark split tiled to ``rows`` rows.

    Written by ``benchmarks/data.py``'s ``tiled_split_dir`` (copy ``i`` gets symbols ``<symbol>-t<i>``,
    so every copy is a run of its own series and no window crosses copies). Val and test are the first
    2,000 rows of the benchmark's, as one tile (the container reads all three splits; small ones keep
    them out of the training split's figures). ``peers.json`` beside the splits names the features,
    label and weight columns for the peers.
    """
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from data import TILES_FILE, tiled_split_dir

    target = tiled_split_dir({"train": rows, "val": PEERS_EVAL_ROWS, "test": PEERS_EVAL_ROWS}, root,
                             name or f"peers-{rows}-{PEERS_DATA_VERSION}")
    if not (target / "peers.json").is_file():
        tiles = json.loads((target / TILES_FILE).read_text())
        info = {"rows": rows, "features": tiles["features"], "label": f"label_h{HORIZON}",
                "weight": f"sample_weight_h{HORIZON}", "feature_bytes": tiles["feature_bytes"]["train"]}
        tmp = target / f".peers.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, target / "peers.json")
    return target


def measure(side: str, data_dir: Path, n_batches: int, timeout: float, mem_gib: float, venv: Path | None) -> dict:
    """One side at one size, in a fresh process under RLIMIT_AS and a timeout; what it reported, or why it stopped."""
    python = sys.executable if side.startswith(("mlfactory", "read-")) else str(venv / "bin" / "python")
    if not Path(python).exists():
        return {"status": f"not installed: {python} is missing; run benchmarks/peers.py --setup"}
    limit = int(mem_gib * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [python, __file__, "--child", side, "--data", str(data_dir), "--batches", str(n_batches)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=cap, env=env)
        out, err, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as stop:
        out = stop.stdout.decode() if isinstance(stop.stdout, bytes) else (stop.stdout or "")
        err, rc = "", None
    stages = {}
    for line in out.splitlines():
        if line.startswith("PEERS "):
            record = json.loads(line[len("PEERS "):])
            stages[record.pop("stage")] = record
    result = {"stages": stages, "seconds": time.perf_counter() - started, "mem_gib": mem_gib}
    if rc is None:
        result["status"] = f"timed out after {timeout:.0f} s (stages done: {', '.join(stages) or 'none'})"
    elif rc != 0:
        result["status"] = _failure(err, rc, mem_gib)
        result["error_tail"] = err.strip().splitlines()[-12:]
    else:
        result["status"] = "ok"
    return result


def _failure(stderr: str, rc: int, mem_gib: float) -> str:
    text = stderr.lower()
    if any(s in text for s in ("memoryerror", "cannot allocate", "bad_alloc", "out of memory", "_arraymemoryerror")):
        return f"out of memory (RLIMIT_AS {mem_gib:g} GiB)"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return f"failed (exit {rc}): {lines[-1] if lines else 'no message'}"


def setup(venv_for: dict[str, Path]) -> None:
    """Create each peer's virtual environment and install its pinned requirements (``torch==2.13.0`` CPU included)."""
    for side, venv in venv_for.items():
        requirements = VENVS[side][1]
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(requirements)], check=True)
        print(f"{side}: {venv} from {requirements.name}")


def table(results: list[dict]) -> str:
    """The markdown table of every (size, side) measurement."""
    lines = ["| n rows | side | status | split MiB | load CPU s | load peak / split | build CPU s | build peak / split | "
             "held after build / split | train peak / split | samples/s (CPU) | samples/s (wall) | loader ms/batch (CPU) | x shape | "
             "first loss | mean loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, split = r["stages"], r["feature_bytes"]
        load, build, train = s.get("load", {}), s.get("build", {}), s.get("train", {})

        def f(stage: dict, key: str, fmt: str, scale: float = 1.0) -> str:
            return format(stage[key] / scale, fmt) if key in stage else "-"

        cap = f" (cap {r['mem_gib']:g} GiB)" if r["status"] == "ok" and r.get("mem_gib", DEFAULT_MEM_GIB) != DEFAULT_MEM_GIB else ""
        lines.append(
            f"| {r['rows']:,} | {r['side']} | {r['status']}{cap} | {split / 2**20:,.0f} | {f(load, 'cpu_s', '.2f')} | "
            f"{f(load, 'peak_bytes', '.2f', split)} | "
            f"{f(build, 'cpu_s', '.2f')} | {f(build, 'peak_bytes', '.2f', split)} | {f(build, 'held_bytes', '.2f', split)} | "
            f"{f(train, 'peak_bytes', '.2f', split)} | {f(train, 'samples_per_s_cpu', '.0f')} | "
            f"{f(train, 'samples_per_s_wall', '.0f')} | {f(train, 'loader_ms_cpu', '.1f')} | {train.get('shapes', {}).get('x', '-')} | "
            f"{f(train, 'first_loss', '.3f')} | {f(train, 'mean_loss', '.3f')} |"
        )
    return "\n".join(lines)


def versions(venv_for: dict[str, Path]) -> dict[str, str]:
    """Installed versions of each side's libraries, as its own interpreter reports them."""
    probe = ("import importlib.metadata as m, json, sys; out = {}\n"
             "for p in sys.argv[1:]:\n"
             "    try: out[p] = m.version(p)\n"
             "    except m.PackageNotFoundError: out[p] = 'absent'\n"
             "print(json.dumps(out))")
    found = {}
    for side, python, packages in (
        ("mlfactory", sys.executable, ("torch", "lightning", "numpy", "pyarrow")),
        *((side, str(venv / "bin" / "python"), {"pytorch-forecasting": ("pytorch-forecasting", "torch", "lightning", "pandas"),
                                               "tsai": ("tsai", "fastai", "torch", "torchvision")}[side])
          for side, venv in venv_for.items()),
    ):
        try:
            done = subprocess.run([python, "-c", probe, *packages], capture_output=True, text=True, check=True)
            found[side] = ", ".join(f"{k} {v}" for k, v in json.loads(done.stdout).items())
        except (OSError, subprocess.CalledProcessError) as err:
            found[side] = f"unavailable ({err})"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="create the peers' virtual environments and exit")
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000], help="training rows n (default: 50000)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--batches", type=int, default=20, help="timed training batches after one warm-up batch")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    parser.add_argument("--mem-gib", type=float, default=DEFAULT_MEM_GIB, help="RLIMIT_AS of each measurement's process, GiB")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/mlfactory-peers-data"))
    parser.add_argument("--venv", type=Path, default=VENVS["pytorch-forecasting"][0])
    parser.add_argument("--tsai-venv", type=Path, default=VENVS["tsai"][0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mlfactory-peers-results.json"))
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of results JSON files written before, and exit")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # warm-up on the tiny split: imports, first allocations and one training batch, paid by no stage
        CHILDREN[args.child](args.data.parent / WARM_NAME, 1, emit=_quiet)
        gc.collect()
        CHILDREN[args.child](args.data, args.batches)
        return
    venv_for = {"pytorch-forecasting": args.venv, "tsai": args.tsai_venv}
    if args.table:
        merged = [r for path in args.table for r in json.loads(path.read_text())["results"]]
        print(table(sorted(merged, key=lambda r: (r["rows"], SIDES.index(r["side"])))))
        return
    if args.setup:
        setup(venv_for)
        return
    report = {"versions": versions(venv_for), "not_run": NOT_RUN, "results": [],
              "command": " ".join(["benchmarks/peers.py", *sys.argv[1:]])}
    split_dir(WARM_ROWS, args.data_root, WARM_NAME)
    for rows in args.rows:
        data_dir = split_dir(rows, args.data_root)
        info = json.loads((data_dir / "peers.json").read_text())
        for side in args.sides:
            result = measure(side, data_dir, args.batches, args.timeout, args.mem_gib, venv_for.get(side))
            report["results"].append({"rows": rows, "side": side, "feature_bytes": info["feature_bytes"], **result})
            print(f"{rows:>9,} {side:20s} {result['status']}", file=sys.stderr, flush=True)
            args.out.write_text(json.dumps(report, indent=2))
    print("versions: " + "; ".join(f"{k}: {v}" for k, v in report["versions"].items()))
    print(table(report["results"]))


if __name__ == "__main__":
    main()
