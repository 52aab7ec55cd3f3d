"""Run a cross-validation: one ordinary fit per split on the development rows, and the record of the whole.

Every split is ``Trainer.fit(model, datamodule.restricted(train=, val=, predict=))`` on a container
whose three splits are all the development rows (train + val of the split directory, test too with
``include_test``), so a split can train on rows from either side of the directory's own boundary.
What does not depend on the split is done once, before the first fit (:class:`SharedWork`); with
``workers > 1`` the splits run in forked processes that share it (:mod:`mlfactory.validation.workers`).
Layout of the record: docs/validation.md.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlfactory.atomic import replacing, write_json
from mlfactory.data.split import SplitData
from mlfactory.errors import MLFactoryError
from mlfactory.validation.record import (
    PROB_COLUMNS,
    QUANTILES,
    Status,
    across,
    distribution,
    fold_figure,
    folds_table,
    mark_unfinished_splits,
    path_scores,
    predictions_table,
    scores,
)
from mlfactory.validation.splits import CVError, CVPlan, CVSplit, cpcv, purged_kfold, walk_forward
from mlfactory.validation.workers import fork_available, run_forked

if TYPE_CHECKING:
    import lightning as L

    from mlfactory.data.container import TimeSeriesDataContainer
    from mlfactory.data.datamodule import FactoryDataModule
    from mlfactory.prepare.scaling import Scaler

__all__ = ["PROB_COLUMNS", "QUANTILES", "SCHEMES", "CVSettings", "SharedWork", "distribution", "run_cv", "scores"]

SCHEMES = ("walk_forward", "cpcv", "kfold")
OUTPUTS = ("summary.json", "predictions.parquet")  # written only when every split finished


@dataclasses.dataclass
class CVSettings:
    """What ``--cv.*`` sets: the scheme and its sizes (docs/validation.md).

    Args:
        scheme: ``walk_forward``, ``cpcv`` or ``kfold``.
        n_splits: test windows of walk-forward, folds of k-fold.
        n_groups: CPCV's N contiguous groups.
        n_test_groups: CPCV's k test groups per split.
        embargo: bars dropped from training after each test group; unset, the label horizon.
        train_window: walk-forward's rolling training period in bars (timestamps); unset, expanding.
        val_fraction: the latest share of each split's training period that validates (early stopping).
        include_test: add the split directory's test split to the development rows.
        refit_scaler: refit the feature scaler on each split's training rows, from the unscaled values that
            ``scaling_metadata.json`` recovers; a directory without one keeps its features as they are.
        workers: splits fitted at the same time, each in its own process forked from the one that read
            the data, with its share of the threads: ``--data.threads`` (unset: every core) divided by
            the workers. 1 fits the splits one after another in this process.
        split_plots: draw every split's figures (its plots/ and TensorBoard images) as a fit does; off,
            the splits' records hold the numbers only and the cv draws its own fold diagram (faster).
    """

    scheme: Literal["walk_forward", "cpcv", "kfold"] = "walk_forward"
    n_splits: int = 5
    n_groups: int = 6
    n_test_groups: int = 2
    embargo: int | None = None
    train_window: int | None = None
    val_fraction: float = 0.1
    include_test: bool = False
    refit_scaler: bool = True
    workers: int = 1
    split_plots: bool = False

    def plan(self, timestamps: np.ndarray, symbol_codes: np.ndarray, horizon: int) -> CVPlan:
        """The splits of this scheme over the development rows."""
        if self.scheme == "walk_forward":
            return walk_forward(timestamps, symbol_codes, horizon, self.n_splits, self.train_window, self.embargo,
                                self.val_fraction)
        if self.scheme == "cpcv":
            return cpcv(timestamps, symbol_codes, horizon, self.n_groups, self.n_test_groups, self.embargo,
                        self.val_fraction)
        if self.scheme == "kfold":
            return purged_kfold(timestamps, symbol_codes, horizon, self.n_splits, self.embargo, self.val_fraction)
        raise CVError(f"--cv.scheme {self.scheme!r} is unknown; choose one of {', '.join(SCHEMES)}")

    def check(self) -> None:
        """Refuse settings that no data makes valid (the plan checks the rest against the rows)."""
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise CVError(f"--cv.workers {self.workers!r}: the number of splits fitted at once is a whole number, "
                          "1 or more (1: one after another in this process)")
        if self.workers > 1 and not fork_available():
            raise CVError(f"--cv.workers {self.workers} forks worker processes, which this platform cannot; "
                          "use --cv.workers 1")


def development_split(container: "TimeSeriesDataContainer", include_test: bool = False) -> SplitData:
    """Train + val (+ test) of ``container`` as one split, rows grouped by symbol and time-sorted within."""
    parts = [container.split(name) for name in (("train", "val", "test") if include_test else ("train", "val"))]
    symbols = tuple(sorted({s for part in parts for s in part.symbols}))
    codes = np.concatenate([
        np.searchsorted(symbols, np.asarray(part.symbols, dtype=object)[part.symbol_codes].astype(str))
        for part in parts]).astype(np.int32)
    order = np.argsort(codes, kind="stable")  # splits are chronological, so time order holds within a symbol
    codes = codes[order]
    boundary = np.ones(len(codes), dtype=bool)
    boundary[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(boundary)
    fwd = None if any(p.fwd_returns is None for p in parts) else np.concatenate([p.fwd_returns for p in parts])[order]
    return SplitData(
        name="development",
        features=np.ascontiguousarray(np.concatenate([p.features for p in parts])[order]),
        labels=np.concatenate([p.labels for p in parts])[order],
        weights=np.concatenate([p.weights for p in parts])[order],
        timestamps=np.concatenate([p.timestamps for p in parts])[order],
        symbol_codes=codes,
        symbols=symbols,
        fwd_returns=fwd,
        segment_start=starts[np.cumsum(boundary) - 1].astype(np.int64),
    )


def _container(source: "TimeSeriesDataContainer", dev: SplitData, metadata: dict | None) -> "TimeSeriesDataContainer":
    """A container whose train, val and test splits are all ``dev``; it shares ``source``'s multi-resolution bins."""
    from mlfactory.data.container import TimeSeriesDataContainer

    splits = {name: dataclasses.replace(dev, name=name) for name in ("train", "val", "test")}
    container = TimeSeriesDataContainer(splits, source.feature_names, source.horizon, source.data_dir, metadata)
    container._multires = source._multires  # raw-bar bins do not depend on the rows: built once for every split
    return container


def _with_container(datamodule: "FactoryDataModule", container: "TimeSeriesDataContainer") -> "FactoryDataModule":
    """A copy of ``datamodule`` serving ``container`` (class-balanced when the data module balances)."""
    result = copy.copy(datamodule)
    result.unbalanced_container = container
    result.container = container
    if datamodule.balance_classes:
        result.container = container.with_balanced_classes()
        result.container._multires = container._multires
    return result


def development_datamodule(datamodule: "FactoryDataModule", include_test: bool = False) -> "FactoryDataModule":
    """A copy of a set-up data module whose train, val and test splits are all the development rows.

    Its ``restricted(train=, val=, predict=)`` then takes any development rows for each role; the class
    balance is learned from a split's training rows when ``learn_statistics`` is set.
    """
    source = datamodule.unbalanced_container
    if source is None:
        raise CVError("the data module is not set up: call prepare_data() and setup('fit') first")
    result = _with_container(datamodule, _container(source, development_split(source, include_test), source.metadata))
    result.trainer = None
    result.row_subset = {}
    result.predict_split = "test"
    return result


def _prepare_scaler(datamodule: "FactoryDataModule") -> "Scaler | None":
    """prepare's scaler of the features, from ``scaling_metadata.json``; None without one (features as given)."""
    from mlfactory.errors import DataError
    from mlfactory.prepare.scaling import Scaler

    container = datamodule.unbalanced_container
    if not container.metadata or container.metadata.get("scaler") in (None, "none"):
        return None
    try:
        return Scaler.from_metadata(container.metadata, container.feature_names)
    except DataError as err:
        raise CVError(f"{container.data_dir}: scaling_metadata.json {err}; the scaler cannot be refitted per split. "
                      "Fix the file, or pass --cv.refit_scaler false to keep the features as they are") from None


def rescaled(datamodule: "FactoryDataModule", unscaled: np.ndarray, kind: str, train_rows: np.ndarray
             ) -> "FactoryDataModule":
    """A development data module whose features are ``unscaled`` scaled by a scaler fitted on ``train_rows`` only.

    The scaler is prepare's own kind (:class:`~mlfactory.prepare.scaling.Scaler`); the container's metadata
    carries it, so the split's bundle predicts raw features with the scaler the split trained with.
    """
    from mlfactory.prepare.scaling import Scaler

    source = datamodule.unbalanced_container
    scaler = Scaler.fit(kind, (unscaled[train_rows, j] for j in range(unscaled.shape[1])))
    dev = dataclasses.replace(source.split("train"), features=scaler.transform(unscaled))
    return _with_container(datamodule, _container(source, dev, {**source.metadata,
                                                                **scaler.to_metadata(source.feature_names)}))


def sample_rows(model: Any, datamodule: "FactoryDataModule") -> np.ndarray:
    """The development rows that are samples of ``model``'s view (e.g. with a full window)."""
    view = model.input_view(datamodule.seq_len)
    if view.kind == "multires":
        from mlfactory.data.views import InputView

        view = InputView.of("multires", datamodule.seq_len, tuple(datamodule.timeframes), datamodule.lookback,
                            datamodule.span)
        return np.asarray(view.dataset(datamodule.container, "train").rows)
    return view.valid_rows(datamodule.container.split("train"))


def _measure_warmup_once(datamodule: "FactoryDataModule", probe: Any) -> None:
    """Fill the per-process cache of the bundle's feature warm-up (:func:`mlfactory.inference.bars.recipe_spec`)."""
    import warnings

    from mlfactory.inference.bars import recipe_spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each split's bundle says what it has to say
        recipe_spec(datamodule.container, probe.input_view(datamodule.seq_len))


@dataclasses.dataclass
class SharedWork:
    """What every split shares, done once before the first fit: the development rows (read once), the
    plan, the unscaled features, and the rows that are samples of the model's view.

    With ``workers > 1`` the forked workers inherit it copy-on-write; nothing here is written to
    after :meth:`prepare`.
    """

    datamodule: "FactoryDataModule"  # the development data module (development_datamodule)
    dev: SplitData
    plan: CVPlan
    horizon: int
    scaler: "Scaler | None"  # prepare's scaler, refitted per split; None keeps the features as given
    unscaled: np.ndarray | None
    valid: np.ndarray  # development rows that are samples of the model's view

    @classmethod
    def prepare(cls, datamodule: "FactoryDataModule", settings: CVSettings, probe: Any) -> "SharedWork":
        """Read the data (once), plan the splits, undo prepare's scaling; ``probe`` is one model of the run."""
        datamodule.prepare_data()
        datamodule.setup("fit")
        cv_data = development_datamodule(datamodule, settings.include_test)
        dev = cv_data.unbalanced_container.split("train")
        plan = settings.plan(dev.timestamps, dev.symbol_codes, datamodule.horizon)
        scaler = _prepare_scaler(cv_data) if settings.refit_scaler else None
        unscaled = scaler.inverse_transform(dev.features) if scaler is not None else None
        if settings.workers > 1:  # measured here, the bundles' warm-up is inherited by every forked worker
            _measure_warmup_once(datamodule, probe)
        return cls(cv_data, dev, plan, datamodule.horizon, scaler, unscaled, sample_rows(probe, cv_data))

    def split_rows(self, split: CVSplit) -> dict[str, np.ndarray]:
        """The rows of each role of ``split`` that are samples of the model's view."""
        return {role: np.intersect1d(split.rows(role), self.valid) for role in ("train", "val", "test")}

    def split_datamodule(self, split: CVSplit, threads: int | None = None) -> "FactoryDataModule":
        """The data module of one split: its rows, the scaler and the class balance learned from its training rows.

        ``threads`` (when given) replaces the data module's ``threads`` (a worker's share).
        """
        rows = self.split_rows(split)
        data = self.datamodule if self.unscaled is None else rescaled(self.datamodule, self.unscaled, self.scaler.kind,
                                                                      rows["train"])
        result = data.restricted(train=rows["train"], val=rows["val"], predict=rows["test"], learn_statistics=True)
        return result if threads is None else result.with_threads(threads)

    def trading(self, rows: np.ndarray) -> tuple | None:
        """``scores``' trading argument for development ``rows``; None without forward returns."""
        if self.dev.fwd_returns is None:
            return None
        return self.dev.fwd_returns[rows], self.dev.timestamps[rows], self.horizon, self.dev.timestamps


def run_cv(
    make_model: Callable[[], "L.LightningModule"],
    datamodule: "FactoryDataModule",
    make_trainer: Callable[[Path], "L.Trainer"],
    run_dir: Path,
    settings: CVSettings,
    on_split_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit one model per split and write the cross-validation record into ``run_dir``; return the summary.

    ``make_model()`` returns a fresh, unfitted model; ``make_trainer(split_dir)`` an ordinary Trainer
    whose logger writes into ``split_dir`` (with :class:`~mlfactory.RunRecord` among its callbacks).
    Every split starts from the random state this function was called with, so a split's fit does not
    depend on which splits ran before it, nor on ``settings.workers``.

    ``on_split_end(k, split_summary)``, when given, is called in this process as each split finishes
    (in order of completion when ``workers > 1``) with the split's entry of ``summary["splits"]``: its
    test groups, row counts and scores. It returns nothing; if it raises, the run stops (running
    workers are terminated), ``status.json`` says ``failed`` and the exception is raised again.

    ``status.json`` says ``running`` while it works, ``failed`` with the error, ``complete`` last;
    ``summary.json`` and ``predictions.parquet`` exist only when every split finished.
    """
    settings.check()
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # a record written before into the same directory must not outlive a failure
        (run_dir / name).unlink(missing_ok=True)
    status = Status(run_dir)
    status.write("running", scheme=settings.scheme, workers=settings.workers)
    try:
        summary = _run(make_model, datamodule, make_trainer, run_dir, settings, on_split_end)
    except BaseException as err:
        # a worker's traceback rides as a note, which format_exception prints from Python 3.11 on
        notes = "".join(f"\n{note}" for note in getattr(err, "__notes__", [])) if sys.version_info < (3, 11) else ""
        status.write("failed", error=f"{type(err).__name__}: {err}",
                     traceback="".join(traceback.format_exception(type(err), err, err.__traceback__)) + notes)
        mark_unfinished_splits(run_dir, f"stopped: the cross-validation failed ({type(err).__name__}: {err})")
        raise
    status.write("complete", scheme=settings.scheme, workers=settings.workers,
                 seconds=round(time.time() - status.started, 3))
    return summary


def _run(make_model, datamodule, make_trainer, run_dir: Path, settings: CVSettings, on_split_end) -> dict[str, Any]:
    from mlfactory.evaluation.plots import save

    rng = _random_state()
    shared = SharedWork.prepare(datamodule, settings, make_model())
    plan = shared.plan
    with replacing(run_dir / "folds.parquet") as tmp:
        folds_table(plan, shared.dev).to_parquet(tmp, index=False)
    save(fold_figure(plan, shared.dev), run_dir / "folds.png")

    workers = min(settings.workers, len(plan.splits))
    threads = None if workers == 1 else max(1, (datamodule.threads or _cores()) // workers)
    fit = partial(_fit_split, shared, make_model, make_trainer, run_dir, rng, threads)
    finished: dict[int, tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}

    def done(split: CVSplit, result: tuple[dict[str, Any], np.ndarray, np.ndarray]) -> None:
        finished[split.index] = result
        if on_split_end is not None:
            on_split_end(split.index, result[0])

    if workers == 1:
        for split in plan.splits:
            done(split, fit(split))
    else:
        run_forked(fit, plan.splits, workers, done, describe=lambda split: f"cv split {split.index}")

    per_split = [finished[s.index][0] for s in plan.splits]
    table = predictions_table(plan, shared.dev, {k: (rows, probs) for k, (_, rows, probs) in finished.items()})
    trading = shared.dev.fwd_returns is not None
    summary = {
        "scheme": plan.scheme,
        "settings": {**dataclasses.asdict(settings), **plan.settings},
        "n_development_rows": int(len(shared.dev)),
        "scaler": f"{shared.scaler.kind}, refitted on each split's training rows" if shared.scaler is not None
        else "as given",
        "threads_per_worker": threads,
        "n_splits": len(plan.splits),
        "n_paths": plan.n_paths,
        "splits": per_split,
        "paths": path_scores(table, shared.horizon, shared.dev.timestamps),
        "across_splits": across(per_split, trading),
    }
    summary["across_paths"] = across(summary["paths"], trading)
    with replacing(run_dir / "predictions.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    write_json(run_dir / "summary.json", summary)
    return summary


def _fit_split(shared: SharedWork, make_model, make_trainer, run_dir: Path, rng: tuple, threads: int | None,
               split: CVSplit) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Fit one split: its summary entry, and its test rows and probabilities."""
    try:
        _set_random_state(rng)
        model = make_model()
        data = shared.split_datamodule(split, threads)
        trainer = make_trainer(run_dir / "splits" / str(split.index))
        trainer.fit(model, datamodule=data)
        saved_file = Path(trainer.log_dir) / "predictions" / "test_predictions.npz"
        if not saved_file.is_file():
            raise CVError(f"{saved_file} was not written: the Trainer of make_trainer() needs RunRecord among its "
                          "callbacks and its logger writing into the split's directory")
        with np.load(saved_file) as saved:  # closed at once: a tune study runs many of these
            rows, probs = saved["row"], saved["probabilities"]
    except MLFactoryError as err:  # say which split, on the one line the command prints
        if len(err.args) == 1 and isinstance(err.args[0], str) and not err.args[0].startswith("cv split"):
            err.args = (f"cv split {split.index}: {err.args[0]}",)
        raise
    counts = {role: int(len(r)) for role, r in shared.split_rows(split).items()}
    entry = {"split": split.index, "test_groups": list(split.test_groups), "rows": counts,
             **scores(probs, shared.dev.labels[rows], shared.trading(rows))}
    return entry, rows, probs


def _random_state() -> tuple:
    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_random_state(state: tuple) -> None:
    import torch

    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


def _cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
