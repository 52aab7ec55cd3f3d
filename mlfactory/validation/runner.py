"""Run a cross-validation: one ordinary fit per split on the development rows, and the record of the whole.

Every split is ``Trainer.fit(model, datamodule.restricted(train=, val=, predict=))`` on a container
whose three splits are all the development rows (train + val of the split directory, test too with
``include_test``), so a split can train on rows from either side of the directory's own boundary.
Layout of the record: docs/validation.md.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlfactory.atomic import replacing, write_json
from mlfactory.data.contract import CLASS_NAMES
from mlfactory.data.split import SplitData
from mlfactory.validation.splits import ROLES, CVError, CVPlan, cpcv, purged_kfold, walk_forward

if TYPE_CHECKING:
    import lightning as L

    from mlfactory.data.container import TimeSeriesDataContainer
    from mlfactory.data.datamodule import FactoryDataModule

SCHEMES = ("walk_forward", "cpcv", "kfold")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PROB_COLUMNS = [f"p_{name}" for name in CLASS_NAMES]


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


def development_datamodule(datamodule: "FactoryDataModule", include_test: bool = False) -> "FactoryDataModule":
    """A copy of a set-up data module whose train, val and test splits are all the development rows.

    Its ``restricted(train=, val=, predict=)`` then takes any development rows for each role; the class
    balance is learned from a split's training rows when ``learn_statistics`` is set.
    """
    from mlfactory.data.container import TimeSeriesDataContainer

    source = datamodule.unbalanced_container
    if source is None:
        raise CVError("the data module is not set up: call prepare_data() and setup('fit') first")
    dev = development_split(source, include_test)
    splits = {name: dataclasses.replace(dev, name=name) for name in ("train", "val", "test")}
    container = TimeSeriesDataContainer(splits, source.feature_names, source.horizon, source.data_dir, source.metadata)
    result = copy.copy(datamodule)
    result.trainer = None
    result.row_subset = {}
    result.predict_split = "test"
    result.unbalanced_container = container
    result.container = container.with_balanced_classes() if datamodule.balance_classes else container
    return result


def _prepare_scaler(datamodule: "FactoryDataModule") -> Any:
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
    from mlfactory.data.container import TimeSeriesDataContainer
    from mlfactory.prepare.scaling import Scaler

    source = datamodule.unbalanced_container
    scaler = Scaler.fit(kind, (unscaled[train_rows, j] for j in range(unscaled.shape[1])))
    dev = dataclasses.replace(source.split("train"), features=scaler.transform(unscaled))
    splits = {name: dataclasses.replace(dev, name=name) for name in ("train", "val", "test")}
    metadata = {**source.metadata, **scaler.to_metadata(source.feature_names)}
    container = TimeSeriesDataContainer(splits, source.feature_names, source.horizon, source.data_dir, metadata)
    result = copy.copy(datamodule)
    result.unbalanced_container = container
    result.container = container.with_balanced_classes() if datamodule.balance_classes else container
    return result


def sample_rows(model: Any, datamodule: "FactoryDataModule") -> np.ndarray:
    """The development rows that are samples of ``model``'s view (e.g. with a full window)."""
    view = model.input_view(datamodule.seq_len)
    if view.kind == "multires":
        from mlfactory.data.views import InputView

        view = InputView.of("multires", datamodule.seq_len, tuple(datamodule.timeframes), datamodule.lookback,
                            datamodule.span)
        return np.asarray(view.dataset(datamodule.container, "train").rows)
    return view.valid_rows(datamodule.container.split("train"))


def folds_table(plan: CVPlan, dev: SplitData) -> "Any":
    """One row per development row per split: split, datetime, symbol, group, role."""
    import pandas as pd

    n, k = len(dev), len(plan.splits)
    symbols = pd.Categorical.from_codes(np.tile(dev.symbol_codes, k), categories=list(dev.symbols))
    return pd.DataFrame({
        "split": np.repeat([s.index for s in plan.splits], n).astype(np.int32),
        "datetime": pd.to_datetime(np.tile(dev.timestamps, k)).tz_localize("UTC"),
        "symbol": symbols,
        "group": np.tile(plan.groups, len(plan.splits)).astype(np.int32),
        "role": pd.Categorical.from_codes(np.concatenate([s.roles for s in plan.splits]), categories=list(ROLES)),
    })


def fold_figure(plan: CVPlan, dev: SplitData) -> Any:
    """Rows (development rows in time order, first symbol) x splits, coloured by role."""
    from matplotlib.colors import ListedColormap

    from mlfactory.evaluation.plots import _pyplot

    plt = _pyplot()
    first = np.flatnonzero(dev.symbol_codes == dev.symbol_codes[0])
    image = np.stack([s.roles[first] for s in plan.splits])
    colours = ["#4c72b0", "#8fb4e3", "#dd8452", "#c44e52", "#937860", "#e5e5e5"]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(plan.splits) + 1.6))
    ax.imshow(image, aspect="auto", interpolation="nearest", cmap=ListedColormap(colours), vmin=-0.5,
              vmax=len(ROLES) - 0.5)
    ax.set_yticks(range(len(plan.splits)), [str(s.index) for s in plan.splits])
    ax.set_ylabel("split")
    ticks = np.linspace(0, len(first) - 1, 5).astype(int)
    ax.set_xticks(ticks, [str(dev.timestamps[first][t])[:16] for t in ticks], fontsize=7)
    symbol = dev.symbols[dev.symbol_codes[0]]
    ax.set_title(f"{plan.scheme}: roles of the development rows{f' ({symbol})' if symbol else ''}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    ax.legend(handles, ROLES, ncol=len(ROLES), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return fig


def scores(probs: np.ndarray, labels: np.ndarray, trading: tuple[np.ndarray, np.ndarray, int, np.ndarray] | None = None
           ) -> dict[str, Any]:
    """Balanced accuracy, log loss and direction AUC of predictions (evaluation/classification.py); with
    ``trading = (fwd_returns, timestamps, horizon, calendar)`` also the annualised Sharpe ratio and the
    mean daily information coefficient (evaluation/trading.py, the same as a fit's test metrics)."""
    from mlfactory.evaluation.classification import classification_report

    report = classification_report(probs, labels)
    result = {key: report[key] for key in ("n_samples", "balanced_accuracy", "log_loss", "direction_auc")}
    if trading is not None:
        from mlfactory.evaluation.trading import trading_report

        fwd, times, horizon, calendar = trading
        finite = np.isfinite(fwd)
        report = trading_report(probs[finite], fwd[finite], times[finite], horizon, calendar=calendar)
        result.update({key: report.get(key) for key in ("sharpe_annualised", "ic_mean")})
    return result


def distribution(values: list[float | None]) -> dict[str, Any]:
    """Mean, std, min, max and quantiles of the defined values."""
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(kept):
        return {"n": 0}
    return {"n": int(len(kept)), "mean": float(kept.mean()), "std": float(kept.std(ddof=1)) if len(kept) > 1 else 0.0,
            "min": float(kept.min()), "max": float(kept.max()),
            "quantiles": {str(q): float(np.quantile(kept, q)) for q in QUANTILES}}


def run_cv(
    make_model: Callable[[], "L.LightningModule"],
    datamodule: "FactoryDataModule",
    make_trainer: Callable[[Path], "L.Trainer"],
    run_dir: Path,
    settings: CVSettings,
) -> dict[str, Any]:
    """Fit one model per split and write the cross-validation record into ``run_dir``; return the summary.

    ``make_model()`` returns a fresh, unfitted model; ``make_trainer(split_dir)`` an ordinary Trainer
    whose logger writes into ``split_dir`` (with :class:`~mlfactory.RunRecord` among its callbacks).
    ``status.json`` says ``running`` while it works, ``failed`` with the error, ``complete`` last.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    status = _Status(run_dir)
    status.write("running", scheme=settings.scheme)
    try:
        summary = _run(make_model, datamodule, make_trainer, run_dir, settings)
    except BaseException as err:
        status.write("failed", error=f"{type(err).__name__}: {err}", traceback="".join(traceback.format_exception(err)))
        raise
    status.write("complete", scheme=settings.scheme, seconds=round(time.time() - status.started, 3))
    return summary


def _run(make_model, datamodule, make_trainer, run_dir: Path, settings: CVSettings) -> dict[str, Any]:
    from mlfactory.evaluation.plots import save

    datamodule.prepare_data()
    datamodule.setup("fit")
    cv_data = development_datamodule(datamodule, settings.include_test)
    dev = cv_data.unbalanced_container.split("train")
    plan = settings.plan(dev.timestamps, dev.symbol_codes, datamodule.horizon)
    with replacing(run_dir / "folds.parquet") as tmp:
        folds_table(plan, dev).to_parquet(tmp, index=False)
    save(fold_figure(plan, dev), run_dir / "folds.png")

    scaler = _prepare_scaler(cv_data) if settings.refit_scaler else None
    unscaled = scaler.inverse_transform(dev.features) if scaler is not None else None
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # split -> (rows, probs)
    per_split = []

    def trading(rows: np.ndarray) -> tuple | None:
        if dev.fwd_returns is None:
            return None
        return dev.fwd_returns[rows], dev.timestamps[rows], datamodule.horizon, dev.timestamps

    for split in plan.splits:
        model = make_model()
        valid = sample_rows(model, cv_data)
        rows = {role: np.intersect1d(split.rows(role), valid) for role in ("train", "val", "test")}
        split_data = cv_data if unscaled is None else rescaled(cv_data, unscaled, scaler.kind, rows["train"])
        trainer = make_trainer(run_dir / "splits" / str(split.index))
        trainer.fit(model, datamodule=split_data.restricted(train=rows["train"], val=rows["val"], predict=rows["test"],
                                                            learn_statistics=True))
        saved = np.load(Path(trainer.log_dir) / "predictions" / "test_predictions.npz")
        predictions[split.index] = (saved["row"], saved["probabilities"])
        per_split.append({"split": split.index, "test_groups": list(split.test_groups),
                          "rows": {role: int(len(r)) for role, r in rows.items()},
                          **scores(saved["probabilities"], dev.labels[saved["row"]], trading(saved["row"]))})

    table = _predictions_table(plan, dev, predictions)
    with replacing(run_dir / "predictions.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    per_path = []
    for path, frame in table.groupby("path", sort=True):
        market = None if "fwd_return" not in frame else (
            frame["fwd_return"].to_numpy(), frame["datetime"].to_numpy(), datamodule.horizon, dev.timestamps)
        per_path.append({"path": int(path), **scores(frame[PROB_COLUMNS].to_numpy(), frame["label"].to_numpy(), market)})
    metrics = ("balanced_accuracy", "log_loss", "direction_auc") + (
        ("sharpe_annualised", "ic_mean") if dev.fwd_returns is not None else ())
    summary = {
        "scheme": plan.scheme,
        "settings": {**dataclasses.asdict(settings), **plan.settings},
        "n_development_rows": int(len(dev)),
        "scaler": f"{scaler.kind}, refitted on each split's training rows" if scaler is not None else "as given",
        "n_splits": len(plan.splits),
        "n_paths": plan.n_paths,
        "splits": per_split,
        "paths": per_path,
        "across_splits": {m: distribution([s[m] for s in per_split]) for m in metrics},
        "across_paths": {m: distribution([p[m] for p in per_path]) for m in metrics},
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def _predictions_table(plan: CVPlan, dev: SplitData, predictions: dict[int, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Every path's stitched out-of-sample predictions: one row per (path, development row predicted)."""
    import pandas as pd

    frames = []
    for path in range(plan.n_paths):
        for split, wanted in plan.path_rows(path).items():
            rows, probs = predictions[split]
            keep = np.isin(rows, wanted)
            taken = rows[keep]
            frame = dev.identity(taken)
            frame.insert(0, "split", np.int32(split))
            frame.insert(0, "path", np.int32(path))
            frame["label"] = dev.labels[taken]
            if dev.fwd_returns is not None:
                frame["fwd_return"] = dev.fwd_returns[taken]
            frame[PROB_COLUMNS] = probs[keep]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True).sort_values(["path", "symbol", "datetime"], ignore_index=True)


class _Status:
    """``status.json`` of a cross-validation, with the rules of a fit's: pid and host, ``created`` kept."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "status.json"
        self.started = time.time()
        self.created = _now()

    def write(self, status: str, **details: Any) -> None:
        write_json(self.path, {"status": status, "created": self.created, "updated": _now(), "pid": os.getpid(),
                               "host": socket.gethostname(), "command": "cv", "stage": "cv", **details})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
