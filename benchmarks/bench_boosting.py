"""Benchmark 3, non-gradient overhead: xgboost, lightgbm and catboost fitted through mlfactory vs by the library.

Target: ``Trainer.fit`` of the registered model through mlfactory takes at most 1.1 x the library's own
fit on the same arrays and parameters, and both predict identically.

Both sides run in one process, after the split directory is read (``FactoryDataModule.setup``, with
its class-balanced weights), on the very same arrays (``datamodule.arrays(...)``), with the same
parameters: the models' defaults, except ``n_estimators`` (40; 15 with ``--quick``),
``learning_rate=0.1``, ``early_stopping_rounds=10`` and ``n_jobs`` = the benchmark's thread count.

- **library**: the library's classifier built with those parameters by hand and fitted the way its
  documentation shows, with sample weights and early stopping on the weighted validation split
  (``eval_set=[(X_val, y_val)]``; catboost: a weighted ``Pool`` for each split).
- **mlfactory, fit only**: ``Trainer(logger=False, enable_checkpointing=False, progress bar and model
  summary off).fit(create_model(name, ...), datamodule)``. Its time is split into phases by a callback
  and by timing the model's own methods: Lightning's setup, the library fit inside mlfactory, the
  training split's prediction for the train metrics, round logging, validation, teardown.
- **mlfactory, fit + record**: what ``mlfactory fit`` attaches (``RunRecord``, ``ModelCheckpoint``,
  ``EarlyStopping``, ``TensorBoardLogger``, progress bar to /dev/null). No target; its extra time is
  split into the run record's pieces (predictions and metrics of val and test, plots, importance,
  native export, config) and checkpointing.

Library and fit-only alternate (library first, then mlfactory first, ...); the ratio is the median of
the per-repeat ratios. Predictions: ``predict_proba`` of the library's estimator against
``estimator_proba`` of the fitted module, on the test split.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import warnings
from typing import Any, Callable

import numpy as np

from bench_common import Report, Row, Stamp, child_main, clock_name, median, now, spread
from data import HORIZON, bench_split_dir

TARGET = 1.1
LIBRARIES = ("xgboost", "lightgbm", "catboost")
# the phases of a fit through mlfactory, in order (timed by a callback and by wrapping the module's methods)
_FIT_PHASES = (
    "library fit",
    "Lightning setup + sanity",
    "train-split predict",
    "train metrics",
    "round logging",
    "validation pass",
)


def run(quick: bool, threads: int) -> Report:
    from mlfactory.data.datamodule import FactoryDataModule

    data = FactoryDataModule(data_dir=str(bench_split_dir()), horizon=HORIZON)
    data.setup("fit")
    params = {"n_estimators": 15 if quick else 40, "learning_rate": 0.1, "early_stopping_rounds": 10,
              "n_jobs": threads, "random_state": 0}
    repeats = 1 if quick else 2
    judged = "cpu" if threads == 1 else "wall"
    report = Report()
    breakdown_lines = [
        f"Where the time goes, per library ({clock_name(threads)}, seconds, median of the fit-only runs; fit + "
        "record from one run):",
        "",
        "| library | library fit | mlfactory fit only | = library fit inside | + " + " | + ".join(_FIT_PHASES[1:])
        + " | + rest | fit + record | of which record, checkpoints, logging |",
        "|---|---|---|---|" + "---|" * len(_FIT_PHASES) + "---|---|",
    ]
    record_lines: list[str] = []
    for library in LIBRARIES:
        own, fit_only = [], []
        for r in range(repeats):
            sides = [("own", _library_fit), ("mlfactory", _mlfactory_fit)]
            for side, fn in sides if r % 2 == 0 else sides[::-1]:
                result = fn(library, data, params)
                (own if side == "own" else fit_only).append(result)
        record = _mlfactory_fit(library, data, params, record=True)

        ratios = [m["total"].judged(threads) / o["total"].judged(threads) for o, m in zip(own, fit_only)]
        wall = [m["total"].wall / o["total"].wall for o, m in zip(own, fit_only)]
        own_s = median([o["total"].judged(threads) for o in own])
        report.rows.append(Row(
            "boosting", f"{library}: mlfactory fit / library fit", median(ratios), "<=", TARGET,
            detail=f"{clock_name(threads)} {spread(ratios)}; wall time {spread(wall)}; library "
            f"{own_s:.1f} s, {own[0]['rounds']} rounds (best {own[0]['best']})",
        ))
        with_record = record["total"].judged(threads) / own_s
        report.rows.append(Row(
            "boosting", f"{library}: mlfactory fit + run record / library fit", with_record,
            detail=f"{record['total'].judged(threads):.1f} s against {own_s:.1f} s (one run)",
        ))
        X_test = data.arrays("test")[0]
        diff = float(np.max(np.abs(own[0]["estimator"].predict_proba(X_test) - fit_only[0]["proba"](X_test))))
        report.rows.append(Row(
            "boosting", f"{library}: max abs difference of test probabilities", diff, "<=", 0.0, unit="",
            detail="identical" if diff == 0.0 else "predictions differ",
        ))
        phases = {k: median([m["phases"].get(k, Stamp(0, 0)).judged(threads) for m in fit_only]) for k in _FIT_PHASES}
        fit_total = median([m["total"].judged(threads) for m in fit_only])
        rest = fit_total - sum(phases.values())
        record_total = record["total"].judged(threads)
        record_fit = sum(record["phases"].get(k, Stamp(0, 0)).judged(threads) for k in _FIT_PHASES)
        breakdown_lines.append(
            f"| {library} | {own_s:.2f} | {fit_total:.2f} | "
            + " | ".join(f"{phases[k]:.2f}" for k in _FIT_PHASES)
            + f" | {rest:.2f} | {record_total:.2f} | {record_total - record_fit:.2f} |"
        )
        pieces = ", ".join(f"{k.lstrip('_')} {v.judged(threads):.2f}" for k, v in record["phases"].items())
        record_lines.append(f"- {library}, fit + record: {pieces}")
    report.notes.append("\n".join(breakdown_lines))
    report.notes.append(
        "Fit + record, every timed piece (seconds; pieces overlap where one calls another, e.g. the "
        "predictions include their plots):\n\n" + "\n".join(record_lines)
    )
    return report


# --- the library's own fit ---------------------------------------------------------------------


def _library_fit(library: str, data, params: dict) -> dict:
    (X, y, w), (X_val, y_val, w_val) = data.arrays("train"), data.arrays("val")
    start = now()
    estimator, rounds, best = _OWN_FITS[library](params, X, y, w, X_val, y_val, w_val)
    return {"total": now() - start, "estimator": estimator, "rounds": rounds, "best": best}


def _own_xgboost(p: dict, X, y, w, X_val, y_val, w_val) -> tuple[Any, int, int]:
    import xgboost

    estimator = xgboost.XGBClassifier(
        n_estimators=p["n_estimators"], max_depth=6, learning_rate=p["learning_rate"], subsample=0.8,
        colsample_bytree=0.8, min_child_weight=1.0, reg_lambda=1.0, early_stopping_rounds=p["early_stopping_rounds"],
        n_jobs=p["n_jobs"], random_state=p["random_state"], objective="multi:softprob", eval_metric="mlogloss",
        tree_method="hist",
    )
    estimator.fit(X, y, sample_weight=w, eval_set=[(X_val, y_val)], sample_weight_eval_set=[w_val], verbose=False)
    return estimator, estimator.get_booster().num_boosted_rounds(), estimator.best_iteration


def _own_lightgbm(p: dict, X, y, w, X_val, y_val, w_val) -> tuple[Any, int, int]:
    import lightgbm

    estimator = lightgbm.LGBMClassifier(
        n_estimators=p["n_estimators"], num_leaves=31, max_depth=-1, learning_rate=p["learning_rate"], subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, min_child_samples=20, reg_lambda=1.0, n_jobs=p["n_jobs"],
        random_state=p["random_state"], objective="multiclass", verbose=-1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
        estimator.fit(
            X, y, sample_weight=w, eval_set=[(X_val, y_val)], eval_sample_weight=[w_val],
            callbacks=[lightgbm.early_stopping(p["early_stopping_rounds"], verbose=False)],
        )
    return estimator, estimator.booster_.current_iteration(), estimator.best_iteration_


def _own_catboost(p: dict, X, y, w, X_val, y_val, w_val) -> tuple[Any, int, int]:
    import catboost

    estimator = catboost.CatBoostClassifier(
        iterations=p["n_estimators"], depth=6, learning_rate=p["learning_rate"], l2_leaf_reg=3.0,
        early_stopping_rounds=p["early_stopping_rounds"], thread_count=p["n_jobs"], random_seed=p["random_state"],
        loss_function="MultiClass", class_names=[0, 1, 2], use_best_model=True, allow_writing_files=False,
        verbose=False,
    )
    estimator.fit(catboost.Pool(X, y, weight=w), eval_set=catboost.Pool(X_val, y_val, weight=w_val))
    return estimator, estimator.tree_count_, estimator.best_iteration_


_OWN_FITS: dict[str, Callable] = {"xgboost": _own_xgboost, "lightgbm": _own_lightgbm, "catboost": _own_catboost}


# --- through mlfactory -------------------------------------------------------------------------


def _timed(phases: dict[str, Stamp], key: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[key] = phases.get(key, Stamp(0.0, 0.0)) + (now() - start)

    return wrapper


def _phase_callback(phases: dict[str, Stamp], marks: dict[str, Stamp]):
    from lightning.pytorch.callbacks import Callback

    class Phases(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            marks.setdefault("first_batch", now())

        def on_validation_start(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                marks["val_start"] = now()

        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                phases["validation pass"] = now() - marks["val_start"]

    return Phases()


def _mlfactory_fit(library: str, data, params: dict, record: bool = False) -> dict:
    import lightning as L

    from mlfactory.registry import create_model

    model = create_model(library, **params)
    phases: dict[str, Stamp] = {}
    marks: dict[str, Stamp] = {}
    # time the module's own pieces (instance attributes shadow the methods; nothing else changes)
    model.fit_estimator = _timed(phases, "library fit", model.fit_estimator)
    model._log_rounds = _timed(phases, "round logging", model._log_rounds)
    model.log_train_metrics = _timed(phases, "train metrics", model.log_train_metrics)
    proba = model.estimator_proba
    train_predict = _timed(phases, "train-split predict", proba)
    later_predict = _timed(phases, "_predict calls from validation on", proba)
    model.estimator_proba = lambda X: (later_predict if "val_start" in marks else train_predict)(X)
    callbacks = [_phase_callback(phases, marks)]
    with tempfile.TemporaryDirectory(prefix="mlfactory-bench-") as root:
        settings = {"accelerator": "cpu", "devices": 1, "max_epochs": 20, "default_root_dir": root}
        if record:
            callbacks += _record_callbacks(phases)
            from lightning.pytorch.loggers import TensorBoardLogger

            settings.update(log_every_n_steps=10, logger=TensorBoardLogger(save_dir=root, name=library, version="bench"))
        else:
            settings.update(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer = L.Trainer(**settings, callbacks=callbacks)
        start = now()
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            trainer.fit(model, datamodule=data)
        total = now() - start
    phases["Lightning setup + sanity"] = marks["first_batch"] - start
    return {"total": total, "phases": phases, "proba": proba}


def _record_callbacks(phases: dict[str, Stamp]) -> list:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from mlfactory.callbacks.run_record import RunRecord

    record = RunRecord()
    for name, key in (("on_fit_end", "RunRecord.on_fit_end (all)"), ("_save_predictions", "val/test predictions + metrics"),
                      ("_write_plots", "plots"), ("_write_importance", "importance"), ("_write_config", "config")):
        setattr(record, name, _timed(phases, key, getattr(record, name)))
    checkpoint = ModelCheckpoint(monitor="val_loss", mode="min", filename="best", save_last=True, save_top_k=1)
    checkpoint._save_checkpoint = _timed(phases, "checkpoint saving", checkpoint._save_checkpoint)
    return [record, checkpoint, EarlyStopping(monitor="val_loss", mode="min", patience=5)]


if __name__ == "__main__":
    child_main(run)
