"""Per-trial overhead of ``mlfactory tune`` against a bare Optuna loop calling LightGBM on the same rows.

    python benchmarks/tune_overhead.py [--trials 20] [--threads 2] [--data-dir DIR] [--table tune-overhead]

Both sides run in a fresh process, one after the other, on the embedded default data (or ``--data-dir``):

- **mlfactory**: ``mlfactory tune --model lightgbm --tune.n_trials N --tune.objective val --tune.pruner none``
  (the default search space, TPE seeded 0, a SQLite study, every trial a full run record);
- **bare**: ``optuna.create_study`` in memory, TPE seeded 0, the same ranges suggested directly, and
  ``lightgbm.train`` on the same training and validation rows and sample weights that mlfactory's data
  module serves (``FactoryDataModule.arrays``), early-stopped after 50 rounds, scored by the weighted
  validation log loss.

Reported: each side's wall time from process start to end (imports, data loading and N trials), the
mean trial time from Optuna's own start and end stamps, and the ratios (target: at most 1.15 x). With
``--table NAME`` the table is written between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in
docs/tuning.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bare(trials: int, threads: int, data_dir: str | None) -> dict:
    """The bare loop, in this process; returns its timings and values."""
    started = time.time()
    import lightgbm
    import numpy as np
    import optuna

    from mlfactory import FactoryDataModule

    datamodule = FactoryDataModule(data_dir=data_dir, horizon=5, threads=threads)
    datamodule.prepare_data()
    datamodule.setup("fit")
    (X, y, w), (Xv, yv, wv) = datamodule.arrays("train"), datamodule.arrays("val")

    def objective(trial: optuna.Trial) -> float:
        params = {
            "objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": threads, "seed": 0,
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "bagging_fraction": trial.suggest_float("subsample", 0.5, 1.0), "bagging_freq": 1,
            "feature_fraction": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "lambda_l2": trial.suggest_float("reg_lambda", 0.001, 10.0, log=True),
        }
        train = lightgbm.Dataset(X, y, weight=w)
        val = lightgbm.Dataset(Xv, yv, weight=wv, reference=train)
        booster = lightgbm.train(params, train, num_boost_round=500, valid_sets=[val],
                                 callbacks=[lightgbm.early_stopping(50, verbose=False)])
        probs = booster.predict(Xv, num_iteration=booster.best_iteration)
        picked = np.clip(probs[np.arange(len(yv)), yv], 1e-7, None)
        return float(-(wv * np.log(picked)).sum() / wv.sum())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=trials)
    return {"wall": time.time() - started, **_trial_times(study.trials)}


def _trial_times(trials: list) -> dict:
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]
    return {"trial_mean": sum(seconds) / len(seconds), "trials": len(seconds),
            "best": min(t.value for t in trials if t.value is not None)}


def factory(trials: int, threads: int, data_dir: str | None, root: Path) -> dict:
    """``mlfactory tune`` in a fresh process; returns its timings and values."""
    import optuna

    args = [sys.executable, "-m", "mlfactory.cli", "tune", "--model", "lightgbm", "--tune.n_trials", str(trials),
            "--tune.pruner", "none", "--tune.study", "bench", "--trainer.default_root_dir", str(root),
            "--model.n_jobs", str(threads), "--data.threads", str(threads), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"] + (["--data.data_dir", data_dir] if data_dir else [])
    started = time.time()
    subprocess.run(args, check=True, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - started
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{root}/lightning_logs/tune/bench/study.db")
    return {"wall": wall, **_trial_times(study.trials)}


def table(result: dict, trials: int, threads: int) -> str:
    f, b = result["mlfactory"], result["bare"]
    return "\n".join([
        f"lightgbm, {trials} trials, `val` objective, {threads} threads, no pruning "
        f"({os.cpu_count()} CPUs on the measuring machine):", "",
        "| | wall (s) | mean trial (s) | best val log loss |",
        "|---|---:|---:|---:|",
        f"| bare Optuna + `lightgbm.train` | {b['wall']:.1f} | {b['trial_mean']:.2f} | {b['best']:.4f} |",
        f"| `mlfactory tune` | {f['wall']:.1f} | {f['trial_mean']:.2f} | {f['best']:.4f} |",
        f"| ratio | {f['wall'] / b['wall']:.2f} x | {f['trial_mean'] / b['trial_mean']:.2f} x | |",
    ])


def write_table(text: str, name: str) -> None:
    doc = REPO / "docs" / "tuning.md"
    content = doc.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, _, rest = content.partition(start)
    _, _, tail = rest.partition(end)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None, help="a split directory; default: the embedded sample data")
    parser.add_argument("--table", default=None, help="write the table into docs/tuning.md under this marker")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(bare(args.trials, args.threads, args.data_dir)))
        return
    with tempfile.TemporaryDirectory(prefix="mlfactory-tune-bench-") as tmp:
        started = time.time()
        out = subprocess.run([sys.executable, __file__, "--bare", "--trials", str(args.trials), "--threads",
                              str(args.threads)] + (["--data-dir", args.data_dir] if args.data_dir else []),
                             check=True, capture_output=True, text=True).stdout
        result = {"bare": {**json.loads(out.strip().splitlines()[-1]), "wall": time.time() - started}}
        result["mlfactory"] = factory(args.trials, args.threads, args.data_dir, Path(tmp))
    text = table(result, args.trials, args.threads)
    print(text)
    if args.table:
        write_table(text, args.table)


if __name__ == "__main__":
    main()
