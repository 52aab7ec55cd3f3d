"""Benchmark 2, neural throughput: lstm training samples/s through mlfactory vs a bare PyTorch loop.

Target: mlfactory (``Trainer`` + ``FactoryDataModule`` + ``LSTMModel``) trains at least 0.9 x the
samples per second of a bare loop over the same model.

Both sides, in one process, with the same ``torch.set_num_threads``:

- the model: a fresh ``LSTMModel`` (the registered lstm at its default sizes: hidden 64, 2 layers,
  dropout 0.1) from the same seed, with ``lr_scheduler="none"`` (a plateau schedule needs a
  validation metric, which the pure variant does not compute); AdamW at the model's defaults;
- the data: the training split of the benchmark directory (50,000 x 180, seq_len 60, class-balanced
  weights as ``FactoryDataModule`` serves them), windows gathered on the fly from the split's 2-D
  array in a fresh random order, batch size 256;
- the work: the first ``N`` batches of an epoch (a full epoch of 195 batches takes minutes on the
  shared 2-core machine, and a batch costs the same anywhere in the epoch).

The bare loop: ``rows[perm]`` -> ``features[rows[:, None] + offsets]`` -> ``model(x)`` ->
sample-weighted cross-entropy -> ``zero_grad``/``backward``/``step``.

Side by side, batch by batch: ``Trainer(max_epochs=1, limit_train_batches=N).fit(model, datamodule)``
runs with a callback that, after each of mlfactory's training batches, runs one step of the bare loop
(its own model, optimizer and permutation). mlfactory's time for a batch is everything from the end of
the previous bare step to the start of the next one (loading, step, hooks, callbacks, logging); the
bare loop's is its step. Both sides thus see the same moments of the shared machine, and a neighbour's
burst slows both. Lightning's one-off setup (before the first batch) is left out and reported.

Two variants of the mlfactory side:

- **pure**: no logger, no checkpointing, no progress bar, no model summary, no validation.
- **CLI defaults**: what ``mlfactory fit`` attaches: ``RunRecord``, ``ModelCheckpoint(val_loss)``,
  ``EarlyStopping(val_loss)``, a ``TensorBoardLogger`` (``log_every_n_steps=10``, as
  configs/training.yaml), the progress bar (to /dev/null) and the model summary, with 2 validation
  batches. The ratio counts training batches only; the rest is reported in seconds beside it.
  ``RunRecord.on_fit_end`` is estimated rather than run (minutes for this model, see the note).

Each variant runs ``repeats`` times; a ratio is (bare seconds / mlfactory seconds) summed over a
run's batches, and the table shows the median over runs.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import tempfile

from bench_common import Report, Row, Stamp, child_main, clock_name, median, now, spread
from data import HORIZON, SEQ_LEN, bench_split_dir

BATCH_SIZE = 256
TARGET = 0.9


def run(quick: bool, threads: int) -> Report:
    import torch

    torch.set_num_threads(threads)
    from mlfactory.callbacks.run_record import MIN_IMPORTANCE_SECONDS
    from mlfactory.data.datamodule import FactoryDataModule
    from mlfactory.evaluation.importance import MIN_SAMPLES, PREDICTION_BUDGET

    n_batches, repeats = (8, 1) if quick else (20, 2)
    data = FactoryDataModule(
        data_dir=str(bench_split_dir()), horizon=HORIZON, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, input_kind="sequence"
    )
    data.setup("fit")
    warm = BareLoop(data)
    for b in range(2):  # one-off kernel initialisation, paid by neither side
        warm.step(b)

    judged = "cpu" if threads == 1 else "wall"
    results = {"pure": [], "cli": []}
    for r in range(repeats):
        for variant in ("pure", "cli") if r % 2 == 0 else ("cli", "pure"):
            results[variant].append(_side_by_side(data, n_batches, threads, cli=variant == "cli"))

    report = Report()
    per_batch: dict[str, float] = {}
    for variant, label in (("pure", "pure"), ("cli", "CLI callbacks")):
        runs = results[variant]
        ratio = {c: [_total(x["bare"], c) / _total(x["mlfactory"], c) for x in runs] for c in ("cpu", "wall")}
        pairs = [getattr(b, judged) / getattr(m, judged) for x in runs for b, m in zip(x["bare"], x["mlfactory"])]
        per_batch[f"bare ({variant} runs)"] = median([getattr(b, judged) for x in runs for b in x["bare"]]) * 1000
        per_batch[f"mlfactory {label}"] = median([getattr(m, judged) for x in runs for m in x["mlfactory"]]) * 1000
        samples = n_batches * BATCH_SIZE
        report.rows.append(Row(
            "neural", f"lstm samples/s: mlfactory ({label}) / bare loop", median(ratio[judged]), ">=", TARGET,
            detail=f"{clock_name(threads)}; per run {spread(ratio[judged])}; wall time {spread(ratio['wall'])}; "
            f"per batch pair {spread(pairs)}; bare {median([samples / _total(x['bare'], judged) for x in runs]):.0f}/s, "
            f"mlfactory {median([samples / _total(x['mlfactory'], judged) for x in runs]):.0f}/s; "
            f"{n_batches} batches x {BATCH_SIZE}, {threads} thread(s)",
        ))
    one_off: dict[str, float] = {}
    for variant in ("pure", "cli"):
        for key in results[variant][0]["one_off"]:
            one_off[key] = median([x["one_off"][key].wall for x in results[variant]])

    fit_end = _estimate_fit_end(data, threads)
    epoch_s = per_batch["bare (pure runs)"] / 1000 * len(data.dataset("train")) / BATCH_SIZE
    report.rows.append(Row(
        "neural", "lstm RunRecord end of fit / one training epoch (estimated)", fit_end["seconds"] / epoch_s,
        detail=f"about {fit_end['seconds']:.0f} s: {fit_end['windows']:,} windows of inference at "
        f"{fit_end['rate']:.0f}/s, against {epoch_s:.0f} s for one bare training epoch",
    ))
    report.notes.append(
        f"**Neural throughput.** Median {clock_name(threads)} per batch of {BATCH_SIZE} windows on {threads} "
        "thread(s), ms: " + ", ".join(f"{k} {v:.0f}" for k, v in per_batch.items()) + ". "
        "One-off costs before the first batch or after the last, left out of the ratios (median wall seconds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in one_off.items()) + "."
    )
    report.notes.append(_profile_note(data, max(4, n_batches // 2), threads))
    report.notes.append(
        f"**Run record after an lstm fit.** `RunRecord.on_fit_end` is not run above, because for this model it "
        f"is long: it predicts the whole val and test splits ({fit_end['eval']:,} windows) and computes "
        f"permutation importance on at most {fit_end['samples']:,} val windows for each of the "
        f"{fit_end['features']} features plus a baseline ({fit_end['importance']:,} windows, "
        f"{fit_end['importance'] / fit_end['windows']:.0%} of the total; the caps are {fit_end['max_samples']:,} samples and "
        f"{PREDICTION_BUDGET:,} predicted windows). At the measured inference rate of {fit_end['rate']:.0f} "
        f"windows/s ({clock_name(threads)}) that is about {fit_end['seconds']:.0f} s, "
        f"{fit_end['seconds'] / epoch_s:.1f} x a training epoch of this model (estimated; the benchmark does not "
        f"run it). The time budget can only shorten the importance part, "
        f"{fit_end['importance'] / fit_end['rate']:.0f} s here: it gets {fit_end['share']:.0%} of the fit's "
        f"`train_seconds`, at least {MIN_IMPORTANCE_SECONDS:.0f} s and never fewer than {MIN_SAMPLES} samples, so "
        f"a fit of {math.ceil(fit_end['importance'] / fit_end['rate'] / (fit_end['share'] * epoch_s))} or more "
        f"such epochs pays it in full (docs/run_record.md)."
    )
    return report


def _total(stamps: list[Stamp], clock: str) -> float:
    return sum(getattr(s, clock) for s in stamps)


def _new_model(seed: int = 0):
    import torch

    from mlfactory.models.neural.lstm import LSTMModel

    torch.manual_seed(seed)
    return LSTMModel(lr_scheduler="none")


class BareLoop:
    """The bare PyTorch side: its own LSTMModel and AdamW over the same split tensors, one step at a time."""

    def __init__(self, data, seed: int = 0) -> None:
        import torch

        split = data.container.split("train")
        self.model = _new_model(seed)
        self.model.hparams["n_features"] = split.features.shape[1]
        self.model.ensure_network()
        self.model.train()
        hp = self.model.hparams
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        self.features, self.labels, self.weights = (
            torch.from_numpy(a) for a in (split.features, split.labels, split.weights)
        )
        self.rows = torch.from_numpy(split.window_end_rows(data.seq_len))
        self.offsets = torch.arange(1 - data.seq_len, 1)
        self.perm = None

    def step(self, b: int) -> Stamp:
        """Train on batch ``b`` of this epoch's permutation; return its duration."""
        import torch
        import torch.nn.functional as F

        start = now()
        if self.perm is None:
            self.perm = torch.randperm(len(self.rows))
        end_rows = self.rows[self.perm[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]]
        x, y, w = self.features[end_rows[:, None] + self.offsets], self.labels[end_rows], self.weights[end_rows]
        loss = (F.cross_entropy(self.model(x), y, reduction="none") * w).sum() / w.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return now() - start


def _interleave_callback(data, n_batches: int, threads: int):
    import torch
    from lightning.pytorch.callbacks import Callback

    class Interleave(Callback):
        """After each of mlfactory's training batches, one bare step; times both."""

        def __init__(self) -> None:
            self.mlfactory: list[Stamp] = []
            self.bare: list[Stamp] = []
            self.marks: dict[str, Stamp] = {}
            self._resume: Stamp | None = None

        def on_fit_start(self, trainer, pl_module) -> None:
            self.marks["fit_start"] = now()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            assert torch.get_num_threads() == threads, torch.get_num_threads()
            self.loop = BareLoop(data)  # built outside the clocks, as Lightning's model is
            self.marks["epoch_start"] = self._resume = now()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx >= n_batches:
                return
            self.mlfactory.append(now() - self._resume)
            self.bare.append(self.loop.step(batch_idx))
            self._resume = now()

        def on_validation_start(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                self.marks["val_start"] = now()

        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                self.marks["val_end"] = now()

    return Interleave()


def _side_by_side(data, n_batches: int, threads: int, cli: bool) -> dict:
    """One ``Trainer.fit`` of ``n_batches`` with the bare loop interleaved: per-batch stamps of both sides."""
    import lightning as L

    timer = _interleave_callback(data, n_batches, threads)
    with tempfile.TemporaryDirectory(prefix="mlfactory-bench-") as root:
        trainer = L.Trainer(**_trainer_settings(root, cli), limit_train_batches=n_batches, callbacks=[*_callbacks(cli), timer])
        start = now()
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            trainer.fit(_new_model(), datamodule=data)
        done = now()
    m = timer.marks
    prefix = "CLI" if cli else "pure"
    one_off = {f"{prefix}: Trainer.fit setup{' + sanity check' if cli else ''}": m["epoch_start"] - start}
    if cli:
        one_off["CLI: 2 val batches"] = m["val_end"] - m["val_start"]
        one_off["CLI: epoch end, checkpoints, teardown"] = done - m["val_end"]
    return {"mlfactory": timer.mlfactory, "bare": timer.bare, "one_off": one_off}


def _trainer_settings(root: str, cli: bool) -> dict:
    common = {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "default_root_dir": root}
    if not cli:
        return {**common, "limit_val_batches": 0, "num_sanity_val_steps": 0, "logger": False,
                "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    from lightning.pytorch.loggers import TensorBoardLogger

    return {**common, "limit_val_batches": 2, "log_every_n_steps": 10,
            "logger": TensorBoardLogger(save_dir=root, name="lstm", version="bench")}


def _callbacks(cli: bool) -> list:
    if not cli:
        return []
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from mlfactory.callbacks.run_record import RunRecord

    class RecordWithoutFitEnd(RunRecord):
        """The CLI's RunRecord minus ``on_fit_end`` (estimated separately: minutes for an lstm)."""

        def on_fit_end(self, trainer, pl_module) -> None:
            pass

    return [
        RecordWithoutFitEnd(),
        ModelCheckpoint(monitor="val_loss", mode="min", filename="best", save_last=True, save_top_k=1),
        EarlyStopping(monitor="val_loss", mode="min", patience=5),
    ]


def _estimate_fit_end(data, threads: int) -> dict[str, float]:
    """Seconds RunRecord.on_fit_end would take for this lstm: its windows / the measured inference rate."""
    from mlfactory.callbacks.run_record import RunRecord
    from mlfactory.evaluation.importance import PREDICTION_BUDGET
    from mlfactory.models.base import predict_batches

    model = _new_model()
    model.hparams["n_features"] = data.container.n_features
    model.ensure_network()
    batches = []
    for i, batch in enumerate(data.eval_loader("val")):
        batches.append(batch)
        if i == 2:
            break
    predict_batches(model, batches[:1])  # warm-up
    start = now()
    predict_batches(model, batches)
    seconds = (now() - start).judged(threads)
    rate = sum(len(b["y"]) for b in batches) / seconds
    windows_eval = len(data.dataset("val")) + len(data.dataset("test"))
    n_features = data.container.n_features
    # RunRecord's caps before its time budget (docs/run_record.md): importance_samples (default 2,000)
    # and PREDICTION_BUDGET predicted windows in all, over a baseline pass plus one pass per feature
    defaults = inspect.signature(RunRecord).parameters
    samples = min(defaults["importance_samples"].default, PREDICTION_BUDGET // (n_features + 1))
    windows_importance = samples * (n_features + 1)
    total = windows_eval + windows_importance
    return {"seconds": total / rate, "rate": rate, "windows": total, "eval": windows_eval,
            "importance": windows_importance, "samples": samples, "features": n_features,
            "max_samples": defaults["importance_samples"].default, "share": defaults["importance_share"].default}


# (label, file path fragment, function name): the pieces of a training step, for the profile note
_PROFILE_PARTS = (
    ("gather a batch of windows (`SequenceDataset.__getitems__`)", "mlfactory/data/windows.py", "__getitems__"),
    ("forward + loss (`NeuralModule.loss_and_probs`)", "mlfactory/models/neural/base.py", "loss_and_probs"),
    ("train metrics + `self.log` (`FactoryModule.log_metrics`)", "mlfactory/models/base.py", "log_metrics"),
    ("backward (`Tensor.backward`)", "torch/_tensor.py", "backward"),
    # Lightning runs forward and backward inside optimizer.step(closure): the update alone is step - closure
    ("optimizer update (`Optimizer.step` minus the closure)", "torch/optim/", "step"),
)


def _profile_note(data, n_batches: int, threads: int) -> str:
    """cProfile of one pure mlfactory run (no bare steps): wall ms per batch in each piece of a step."""
    import cProfile
    import pstats

    import lightning as L

    with tempfile.TemporaryDirectory(prefix="mlfactory-bench-") as root:
        trainer = L.Trainer(**_trainer_settings(root, cli=False), limit_train_batches=n_batches)
        model = _new_model()
        profile = cProfile.Profile()
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            profile.enable()
            trainer.fit(model, datamodule=data)
            profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}

    def cumulative(path: str, name: str) -> float:
        return max((v[3] for (f, _, fn), v in stats.items() if path in f.replace(os.sep, "/") and fn == name), default=0.0)

    loop = cumulative("lightning/pytorch/loops/training_epoch_loop.py", "advance") or cumulative(
        "lightning/pytorch/loops/training_epoch_loop.py", "run")
    lines = [
        f"Where an mlfactory training step's time goes (cProfile of {n_batches} batches, pure variant, wall ms per "
        "batch; the profiler adds its own overhead to Python-heavy pieces):",
        "",
        "| piece | ms per batch |",
        "|---|---|",
    ]
    accounted = 0.0
    closure = cumulative("lightning/pytorch/loops/optimization/automatic.py", "__call__")
    for label, path, name in _PROFILE_PARTS:
        seconds = cumulative(path, name) - (closure if path == "torch/optim/" else 0.0)
        ms = seconds * 1000 / n_batches
        accounted += ms
        lines.append(f"| {label} | {ms:.1f} |")
    total = loop * 1000 / n_batches
    lines.append(f"| Lightning's loop, hooks and everything else | {total - accounted:.1f} |")
    lines.append(f"| **training step, all in** | **{total:.1f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    child_main(run)
