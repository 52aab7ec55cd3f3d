"""Benchmark 6, inference: bundle prediction rows/s for xgboost and lstm vs calling the library or module directly.

Target: ``ModelBundle.predict`` reaches at least 0.8 x the rows per second of the direct call on the
same scaled rows: the test split, 50,000 rows x 180 features (the benchmark data has no scaler, so
the bundle takes its features as they are); the lstm predicts the window of seq_len 60 ending at
each row with enough history, on the split's first 8,192 rows (4,096 with ``--quick``), as it
predicts only about 4,000 windows per second on one core.

Setup (not timed): each model is fitted briefly through mlfactory (xgboost: the parameters of the
boosting benchmark, 40 rounds at most; lstm: 2 training batches, as the weights do not change the
speed), its bundle is written by ``mlfactory.inference.write_bundle`` (what ``RunRecord`` calls at
the end of a fit) and loaded back with ``ModelBundle.load``.

- **bundle**: ``bundle.predict(frame)``, ``frame`` being the split's rows as a DataFrame
  (``datetime``, ``symbol`` and the 180 feature columns), at its default batch size (2,048).
- **direct**: xgboost: ``XGBClassifier.predict_proba(X)`` of the fitted estimator on the (n, 180)
  float32 array, one call. lstm: the module's network on windows gathered from the same array with
  one numpy index per batch of 2,048 (as the bundle gathers them; torch's own advanced indexing is
  slower), under ``torch.inference_mode``, then ``softmax``.

Bundle and direct alternate; the ratio (direct seconds / bundle seconds = bundle rows/s / direct
rows/s) is the median over repeats. A cProfile of one ``bundle.predict`` shows where its time goes.
Until ``mlfactory.inference`` exists, the rows say "not measured yet".
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from typing import Any, Callable

from bench_common import Report, Row, child_main, clock_name, median, now, spread
from data import HORIZON, SEQ_LEN, bench_split_dir

TARGET = 0.8
MODELS = ("xgboost", "lstm")
BATCH = 2048
NOT_LANDED = "not measured yet: bundle issue not landed"


def run(quick: bool, threads: int) -> Report:
    report = Report()
    try:
        inference = importlib.import_module("mlfactory.inference")
        inference.ModelBundle.load, inference.write_bundle  # noqa: B018 - the API this benchmark uses
    except (ImportError, AttributeError) as err:
        for name in MODELS:
            report.rows.append(Row("inference", f"{name}: bundle rows/s / direct rows/s", None, ">=", TARGET,
                                   detail=NOT_LANDED))
        report.notes.append(f"**Inference.** {NOT_LANDED} ({type(err).__name__}: {err}).")
        return report

    import torch

    torch.set_num_threads(threads)
    repeats = 3 if quick else 5
    lstm_rows = 4096 if quick else 8192
    for name in MODELS:
        try:
            bundle_fn, direct_fn, rows, model_note, array_fn = _prepare(inference, name, lstm_rows)
        except Exception as err:  # the bundle API changed: say so in the table instead of failing the run
            report.rows.append(Row("inference", f"{name}: bundle rows/s / direct rows/s", None, ">=", TARGET,
                                   detail=f"not measured: {type(err).__name__}: {err}"[:300]))
            continue
        bundle_fn(), direct_fn()  # warm-up
        times = {"bundle": [], "direct": []}
        sides = [("bundle", bundle_fn), ("direct", direct_fn)]
        for r in range(repeats):
            for side, fn in sides if r % 2 == 0 else sides[::-1]:
                start = now()
                fn()
                times[side].append((now() - start).judged(threads))
        ratios = [d / b for b, d in zip(times["bundle"], times["direct"])]
        b_s, d_s = median(times["bundle"]), median(times["direct"])
        report.rows.append(Row(
            "inference", f"{name}: bundle rows/s / direct rows/s", median(ratios), ">=", TARGET,
            detail=f"{clock_name(threads)} {spread(ratios)}; bundle {rows / b_s:,.0f} rows/s, direct "
            f"{rows / d_s:,.0f} rows/s; the bundle adds {(b_s - d_s) / rows * 1e6:.1f} us per row; {model_note}",
        ))
        if array_fn is not None:  # the bundle's model call alone, on the same float32 array
            array = []
            for _ in range(repeats):
                start = now()
                array_fn()
                array.append((now() - start).judged(threads))
            report.rows.append(Row(
                "inference", f"{name}: ModelBundle.predict_proba(array) rows/s / direct rows/s", d_s / median(array),
                detail=f"{clock_name(threads)}; the bundle's model call on the (n, 180) float32 array, without the "
                "DataFrame conversion, checks and output table",
            ))
        report.notes.append(_profile_note(name, bundle_fn, d_s))
    return report


def _prepare(inference: Any, name: str, lstm_rows: int) -> tuple[Callable, Callable, int, str, Callable | None]:
    """(bundle call, direct call, rows per call, what the model is, the bundle's array call or None) for one model."""
    import lightning as L

    from mlfactory.data.datamodule import FactoryDataModule
    from mlfactory.registry import create_model

    data = FactoryDataModule(data_dir=str(bench_split_dir()), horizon=HORIZON, seq_len=SEQ_LEN)
    if name == "xgboost":
        module = create_model(name, n_estimators=40, learning_rate=0.1, early_stopping_rounds=10, n_jobs=1)
    else:
        module = create_model(name)
    root = tempfile.mkdtemp(prefix="mlfactory-bench-bundle-")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2 if name == "lstm" else 1.0,
        limit_val_batches=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root,
    )
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        trainer.fit(module, datamodule=data)
    bundle = inference.ModelBundle.load(inference.write_bundle(module, data, root))
    split = data.container.split("test")
    frame = _frame(data, "test")
    if name == "xgboost":
        X = split.features
        trees = module.estimator_.get_booster().num_boosted_rounds()
        note = f"{trees} rounds x 3 trees of depth 6 (predictions use the best round, {module.estimator_.best_iteration})"
        return ((lambda: bundle.predict(frame)), (lambda: module.estimator_.predict_proba(X)), len(X), note,
                (lambda: bundle.predict_proba(X)))
    # an lstm predicts about 4,000 windows/s on one core: a slice of the split keeps the repeats short
    frame = frame.iloc[:lstm_rows]
    windows = int((split.window_end_rows(SEQ_LEN) < lstm_rows).sum())
    note = f"the first {lstm_rows:,} rows ({windows:,} windows); hidden 64, 2 layers"
    return (lambda: bundle.predict(frame)), _lstm_direct(module, split, lstm_rows), lstm_rows, note, None


def _frame(data, split_name: str):
    """The split's rows as a DataFrame: datetime, symbol and the feature columns."""
    import numpy as np
    import pandas as pd

    split = data.container.split(split_name)
    frame = split.identity(np.arange(len(split)))
    features = pd.DataFrame(split.features, columns=data.container.feature_names)
    return pd.concat([frame, features], axis=1)


def _lstm_direct(module: Any, split, n_rows: int) -> Callable:
    """The module's network on the same windows, gathered as the bundle gathers them (numpy, one index per batch)."""
    import numpy as np
    import torch

    ends = split.window_end_rows(SEQ_LEN)
    ends = ends[ends < n_rows]
    offsets = np.arange(1 - SEQ_LEN, 1)
    net = module.net.eval()

    def direct() -> None:
        with torch.inference_mode():
            for i in range(0, len(ends), BATCH):
                x = torch.from_numpy(split.features[ends[i : i + BATCH, None] + offsets])
                net(x).softmax(dim=-1)

    return direct


# (label, file path fragment, function name) of the pieces of bundle.predict
_PROFILE_PARTS = (
    ("features to a float32 matrix, checks (`feature_matrix`)", "mlfactory/inference/predictor.py", "feature_matrix"),
    ("datetime parsing (`timestamps`)", "mlfactory/inference/predictor.py", "timestamps"),
    ("symbols (`symbols`)", "mlfactory/inference/predictor.py", "symbols"),
    ("model calls (`ModelBundle.predict_proba`, all batches)", "mlfactory/inference/bundle.py", "predict_proba"),
    ("output table (`output_frame`)", "mlfactory/inference/predictor.py", "output_frame"),
)


def _profile_note(name: str, bundle_fn: Callable, direct_s: float) -> str:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    start = now()
    profile.enable()
    bundle_fn()
    profile.disable()
    total = (now() - start).wall
    stats = pstats.Stats(profile).stats

    def cumulative(path: str, fn: str) -> float:
        return max((v[3] for (f, _, n), v in stats.items() if path in f.replace(os.sep, "/") and n == fn), default=0.0)

    lines = [f"Where `bundle.predict` goes for {name} (cProfile of one call, wall seconds; the direct call takes "
             f"{direct_s:.3f} s):", "", "| piece | s |", "|---|---|"]
    accounted = 0.0
    for label, path, fn in _PROFILE_PARTS:
        seconds = cumulative(path, fn)
        accounted += seconds
        lines.append(f"| {label} | {seconds:.3f} |")
    if name == "xgboost":
        library = cumulative("xgboost/sklearn.py", "predict_proba")
        lines.append(f"| of the model calls: xgboost's own `predict_proba` | {library:.3f} |")
    lines.append(f"| the rest | {total - accounted:.3f} |")
    lines.append(f"| **bundle.predict** | **{total:.3f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    child_main(run)
