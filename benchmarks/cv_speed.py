"""Speed of a cross-validation: the whole ``mlfactory cv`` of lightgbm against direct ``lightgbm.train`` fits.

    python benchmarks/cv_speed.py [--threads 1] [--workers 1] [--repeats 2] [--n-splits 5]

Target (issue 16): on the embedded default data, walk-forward with 5 splits, the whole ``mlfactory cv
--model lightgbm`` takes at most 1.3 x the sum of five direct ``lightgbm.train`` fits on the same rows.

Both sides run in this one process, after the imports, alternating (direct first, then cv first, ...):

- **direct**: for each split, the arrays its cv fit receives (training, validation and test rows,
  features rescaled by the split's scaler, class-balanced weights; taken from
  ``SharedWork.split_datamodule`` before the clock starts), then on the clock: a ``lightgbm.Dataset`` of
  the training rows with their weights, the validation ``Dataset`` (``reference=`` the training one),
  ``lightgbm.train`` with the registered model's defaults (multiclass, 500 rounds, learning rate 0.05,
  31 leaves, row and column sampling 0.8, early stopping after 50 rounds on the weighted validation
  log loss, ``num_threads`` = ``--threads``), and ``Booster.predict`` of the test rows.
- **cv**: ``mlfactory.cli.main(["cv", "--model", "lightgbm", "--data.threads", T, "--cv.workers", W,
  "--cv.n_splits", N, ...])`` in a temporary directory, progress bar and model summary off: parsing,
  reading the data, planning the splits, the scaler refits, the five ordinary fits with their run
  records (predictions, metrics, plots, importance, bundle, checkpoints), the folds table and
  diagram, the stitched predictions and the summary.

Clocks: wall time, and the CPU time of this process and its finished children (``os.times``). With
one thread and one worker the CPU time is the fair measure on a machine shared with other jobs; with
several workers the wall time is what the target is about, and needs a quiet machine. The ratio is
the median over the repeats of cv / direct. With one worker the cv's CPU time is broken down into
LightGBM's own training call and the run records' end-of-fit work. Check: the largest difference between the direct
fits' test probabilities and the cv splits' (0 when they are the same models).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

TARGET = 1.3


def clocks() -> tuple[float, float]:
    """(wall, CPU of this process and its waited-for children), seconds."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def split_arrays(threads: int, n_splits: int) -> list[dict[str, tuple[np.ndarray, ...]]]:
    """Per split, the (X, y, w) of train, val and test that the cv's fit of that split receives."""
    from mlfactory import FactoryDataModule, create_model
    from mlfactory.validation.runner import CVSettings, SharedWork

    shared = SharedWork.prepare(FactoryDataModule(threads=threads), CVSettings(n_splits=n_splits),
                                create_model("lightgbm"))
    arrays = []
    for split in shared.plan.splits:
        data = shared.split_datamodule(split)
        arrays.append({role: tuple(np.ascontiguousarray(a) for a in data.arrays(role))
                       for role in ("train", "val", "test")})
        arrays[-1]["rows"] = (shared.split_rows(split)["test"],)
    return arrays


def direct(arrays: list[dict], threads: int) -> tuple[float, float, list[np.ndarray], list[int]]:
    """The direct fits: (wall, cpu, test probabilities per split, rounds per split)."""
    import lightgbm

    params = {"objective": "multiclass", "num_class": 3, "learning_rate": 0.05, "num_leaves": 31, "max_depth": -1,
              "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "min_data_in_leaf": 20,
              "lambda_l2": 1.0, "seed": 0, "num_threads": threads, "verbose": -1, "metric": "multi_logloss"}
    probs, rounds = [], []
    wall, cpu = clocks()
    for split in arrays:
        (X, y, w), (Xv, yv, wv), (Xt, _, _) = split["train"], split["val"], split["test"]
        train = lightgbm.Dataset(X, y, weight=w)
        val = lightgbm.Dataset(Xv, yv, weight=wv, reference=train)
        booster = lightgbm.train(params, train, num_boost_round=500, valid_sets=[val],
                                 callbacks=[lightgbm.early_stopping(50, verbose=False)])
        probs.append(booster.predict(Xt))
        rounds.append(booster.best_iteration)
    end_wall, end_cpu = clocks()
    return end_wall - wall, end_cpu - cpu, probs, rounds


def cross_validation(threads: int, workers: int, n_splits: int) -> tuple[float, float, dict[str, float], Path]:
    """``mlfactory cv`` in a temporary directory: (wall, cpu, CPU seconds of its parts, run directory).

    The parts (one worker only, where they run in this process): LightGBM's own training call, and the
    run record's end-of-fit work of every split (predictions, metrics, plots, importance, bundle).
    """
    import lightgbm.sklearn

    from mlfactory.callbacks.run_record import RunRecord
    from mlfactory.cli import main

    parts = {"LightGBM's own training call": 0.0, "run records' end of fit (predictions, plots, bundle)": 0.0}

    def timed(function, part):
        def wrapper(*args, **kwargs):
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                parts[part] += time.process_time() - started
        return wrapper

    root = Path(tempfile.mkdtemp(prefix="cv_speed_"))
    previous = os.getcwd()
    originals = lightgbm.sklearn.train, RunRecord.on_fit_end
    os.chdir(root)
    lightgbm.sklearn.train = timed(originals[0], "LightGBM's own training call")
    RunRecord.on_fit_end = timed(originals[1], "run records' end of fit (predictions, plots, bundle)")
    try:
        wall, cpu = clocks()
        code = main(["cv", "--model", "lightgbm", "--data.threads", str(threads), "--cv.workers", str(workers),
                     "--cv.n_splits", str(n_splits), "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false"])
        end_wall, end_cpu = clocks()
    finally:
        lightgbm.sklearn.train, RunRecord.on_fit_end = originals
        os.chdir(previous)
    if code != 0:
        raise SystemExit(f"mlfactory cv failed with exit code {code}")
    (run,) = root.glob("lightning_logs/cv/lightgbm/*")
    return end_wall - wall, end_cpu - cpu, parts if workers == 1 else {}, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="--data.threads of the cv; num_threads of direct fits")
    parser.add_argument("--workers", type=int, default=1, help="--cv.workers")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n-splits", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import lightning  # noqa: F401 - imports outside the clocks

    import mlfactory.cli.cv  # noqa: F401

    arrays = split_arrays(args.threads, args.n_splits)
    rows = [f"{len(a['train'][1])}/{len(a['val'][1])}/{len(a['test'][1])}" for a in arrays]
    results: dict[str, list[tuple]] = {"direct": [], "cv": []}
    difference, reference = 0.0, []
    for repeat in range(args.repeats):
        order = ("direct", "cv") if repeat % 2 == 0 else ("cv", "direct")
        for side in order:
            if side == "direct":
                wall, cpu, reference, rounds = direct(arrays, args.threads)  # direct runs first in repeat 0
                results["direct"].append((wall, cpu, rounds))
            else:
                wall, cpu, parts, run = cross_validation(args.threads, args.workers, args.n_splits)
                results["cv"].append((wall, cpu, parts))
                for k, split in enumerate(arrays):
                    saved = np.load(run / "splits" / str(k) / "predictions" / "test_predictions.npz")
                    assert np.array_equal(saved["row"], split["rows"][0]), f"split {k}: other test rows"
                    difference = max(difference, float(np.abs(saved["probabilities"] - reference[k]).max()))
                shutil.rmtree(run.parents[3])
        print(f"repeat {repeat}: direct {results['direct'][-1][:2]}, cv {results['cv'][-1][:2]}", file=sys.stderr,
              flush=True)

    def ratio(index: int) -> float:
        return statistics.median(c[index] / d[index] for c, d in zip(results["cv"], results["direct"]))

    med = {side: [statistics.median(r[i] for r in results[side]) for i in (0, 1)] for side in results}
    print(f"\nlightgbm, walk-forward {args.n_splits} splits on the embedded default data; --data.threads "
          f"{args.threads}, --cv.workers {args.workers}; {args.repeats} repeat(s), medians; rows train/val/test per "
          f"split {', '.join(rows)}; boosting rounds {results['direct'][-1][2]}\n")
    print("| side | wall s | CPU s |\n|---|---|---|")
    print(f"| {args.n_splits} direct lightgbm.train fits | {med['direct'][0]:.2f} | {med['direct'][1]:.2f} |")
    print(f"| mlfactory cv | {med['cv'][0]:.2f} | {med['cv'][1]:.2f} |")
    for part in results["cv"][0][2]:
        print(f"| cv: of which {part} | | {statistics.median(r[2][part] for r in results['cv']):.2f} |")
    print(f"| **cv / direct** | **{ratio(0):.2f} x** | **{ratio(1):.2f} x** |")
    print(f"\ntarget <= {TARGET} x; largest difference of test probabilities, cv against direct: {difference:.2g}")


if __name__ == "__main__":
    main()
