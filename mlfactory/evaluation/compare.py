"""The leaderboard of runs: one row per run directory, read from its record (no torch import).

Rows are fits and cross-validations. A ``test``/``validate``/``predict`` run joins the row of the fit
whose checkpoint it evaluated (column ``evaluations``); one whose fit is not among the runs is a row
of its own, labelled by its ``stage`` and ``evaluates``. Every fit's val and test scores that can be
recomputed from its saved predictions get a 95 % confidence interval from a block bootstrap over days
(:func:`bootstrap_ci`, :func:`sharpe_ci`; docs/metrics.md), and ``noise`` says which runs are within the noise of the
leader. :func:`compare_runs` is what ``mlfactory compare`` prints and ``mlfactory.list_runs`` returns.
"""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlfactory.atomic import process_alive
from mlfactory.errors import RunError

if TYPE_CHECKING:
    import pandas as pd

LOWER_IS_BETTER = ("log_loss", "ece", "max_drawdown", "train_seconds")
SPLIT_METRICS = {
    "accuracy": ("accuracy",),
    "balanced_accuracy": ("balanced_accuracy",),
    "f1_macro": ("f1_macro",),
    "log_loss": ("log_loss",),
    "direction_auc": ("direction_auc",),
    "ece": ("calibration", "expected_calibration_error"),
    "hit_rate": ("trading", "hit_rate"),
    "sharpe": ("trading", "sharpe_annualised"),
    "max_drawdown": ("trading", "max_drawdown"),
    "ic_mean": ("trading", "ic_mean"),
}


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories (folders with a status.json) at or below each path.

    The per-split runs inside a cross-validation (``<cv run>/splits/<k>/``) are parts of its one
    result and are not listed beside it; pass a split's directory itself to see it alone.
    """
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise RunError(f"{path} does not exist; pass run directories or a folder of runs such as lightning_logs/")
        if (path / "status.json").is_file():
            runs.append(path)
        else:
            runs.extend(sorted(p.parent for p in path.rglob("status.json") if not _inside_cv_run(p.parent)))
    return runs


def _inside_cv_run(run: Path) -> bool:
    """Whether ``run`` is one split of a cross-validation (``<cv run>/splits/<k>``)."""
    parent = run.parent.parent / STATUS
    if run.parent.name != "splits" or not parent.is_file():
        return False
    record, _ = _read_record(run.parent.parent, STATUS)
    return (record or {}).get("stage") == "cv"


STATUS = "status.json"
MODEL_CONFIG = "config/model_config.json"
TRAINING_CONFIG = "config/training_config.json"
EVALUATION = "metrics/evaluation_metrics.json"
TRAINING_METRICS = "metrics/training_metrics.json"
CV_SUMMARY = "summary.json"
CV_FIRST_SPLIT = "splits/0/"
# what a complete run of each stage must hold, and the splits its evaluation scores
REQUIRED_FILES = {
    "fit": (MODEL_CONFIG, TRAINING_CONFIG, EVALUATION, TRAINING_METRICS),
    "validate": (MODEL_CONFIG, TRAINING_CONFIG, EVALUATION),
    "test": (MODEL_CONFIG, TRAINING_CONFIG, EVALUATION),
    "predict": (MODEL_CONFIG, TRAINING_CONFIG),
    "cv": (CV_SUMMARY,),
}
SCORED_SPLITS = {"fit": ("val", "test"), "validate": ("val",), "test": ("test",), "predict": (), "cv": ()}
CV_METRICS = {"balanced_accuracy": "balanced_accuracy", "log_loss": "log_loss", "direction_auc": "direction_auc",
              "sharpe_annualised": "sharpe", "ic_mean": "ic_mean"}
"""What a cross-validation's summary gives per split -> its column: ``test_<column>`` holds the mean across
splits, ``test_<column>_std`` their spread (Sharpe and IC only when the data has forward returns)."""
KNOWN_STATUSES = ("running", "failed", "pruned", "complete")  # pruned: a tune trial the study stopped early
EVALUATION_STAGES = ("validate", "test", "predict")
"""Stages that evaluate a fitted checkpoint: shown with the fit they evaluate, not as results of their own."""
CONFIG_YAML = "config.yaml"
PREDICTIONS = "predictions/{split}_predictions.npz"

BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
"""Scores a confidence interval is computed for: unweighted, so each is a function of the confusion matrix."""
BOOTSTRAP_SAMPLES = 1000
MIN_BLOCKS = 20
"""Days are the blocks when the split spans at least this many; shorter splits are cut into this many equal spans."""
CHANCE = {"balanced_accuracy": 1 / 3, "log_loss": float(np.log(3)), "direction_auc": 0.5, "sharpe": 0.0,
          "ic_mean": 0.0}
"""What a model without skill scores (uniform probabilities for the log loss); the plot draws it."""
INTEGER_COLUMNS = ("horizon", "n_splits")
NOT_HYPER_PARAMETERS = {"n_features", "data_dir", "horizon", "eval_batch_size", "num_workers", "predict_split",
                        "threads", "input_kind"}
"""Settings that are not choices about the model (or have a column of their own): never hyper-parameter columns."""


def run_state(status: dict[str, Any]) -> tuple[str, str | None]:
    """The state of a run from its ``status.json``: ``(status, why)``.

    A ``running`` record written on this host by a process that no longer exists is ``dead``: the
    process was killed (SIGKILL, out of memory, power cut) before it could mark the run failed. A
    run started on another host, or by an mlfactory that did not record its pid, stays ``running``.
    """
    state = status.get("status")
    if state != "running":
        return str(state), None
    pid, host = status.get("pid"), status.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not process_alive(pid):
        return "dead", f"process {pid} on {host} is gone without finishing the run"
    return "running", None


def run_row(run: Path) -> dict[str, Any]:
    """One leaderboard row: identity, status, data, every split metric, training time.

    A record file that exists but cannot be read, or a ``complete`` run missing a file its stage
    writes, makes the run ``broken``: its metrics are left empty and ``problem`` names the file.
    """
    problems: list[str] = []

    def read(relative: str) -> dict:
        value, problem = _read_record(run, relative)
        if problem:
            problems.append(problem)
        return value or {}

    status = read(STATUS)
    stage = status.get("stage")
    cv = stage == "cv"
    # a cross-validation's model and data settings are those of its splits (the same for each)
    model, training = (read(CV_FIRST_SPLIT + MODEL_CONFIG), read(CV_FIRST_SPLIT + TRAINING_CONFIG)) if cv else (
        read(MODEL_CONFIG), read(TRAINING_CONFIG))
    evaluation, timing = read(EVALUATION), read(TRAINING_METRICS)
    summary = read(CV_SUMMARY) if cv else {}
    state, why = run_state(status) if status else ("broken", None)
    if status and state not in KNOWN_STATUSES + ("dead",):
        problems.append(f"{STATUS} names no known status ({state!r})")
    if state == "complete":
        for relative in REQUIRED_FILES.get(stage, (MODEL_CONFIG, TRAINING_CONFIG)):
            if not (run / relative).is_file():
                problems.append(f"{relative} is missing")
        for split in SCORED_SPLITS.get(stage, ()):
            if (run / EVALUATION).is_file() and evaluation and not isinstance(evaluation.get(split), dict):
                problems.append(f"{EVALUATION} holds no {split} scores")
    if problems:
        state, why = "broken", "; ".join(problems)
    elif state in ("failed", "pruned"):
        why = status.get("error") or status.get("reason")
    data = training.get("data") if isinstance(training.get("data"), dict) else {}
    row: dict[str, Any] = {
        "model": model.get("name") or run.parent.name,
        "run_id": run.name,
        "status": state,
        "stage": stage,
        "horizon": data.get("horizon"),
        "data": _data_label(data),
        "evaluates": _evaluated_run(run) if stage in EVALUATION_STAGES else None,
        "evaluations": None,
        "_params": _hyper_parameters(model, data),
    }
    for split in ("val", "test"):
        report = evaluation.get(split) if state != "broken" else None
        for name, keys in SPLIT_METRICS.items():
            value: Any = report
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            row[f"{split}_{name}"] = value
    if cv:
        _cv_columns(row, summary if state != "broken" else {}, status)
    row["train_seconds"] = (status.get("seconds") if cv else timing.get("train_seconds")) if state != "broken" else None
    row["problem"] = why
    row["run_dir"] = str(run)
    return row


def _cv_columns(row: dict[str, Any], summary: dict[str, Any], status: dict[str, Any]) -> None:
    """A cross-validation's row: ``test_*`` = the mean over its splits, ``*_std`` their spread, the scheme."""
    across = summary.get("across_splits") if isinstance(summary.get("across_splits"), dict) else {}
    for metric, column in CV_METRICS.items():
        spread = across.get(metric) if isinstance(across.get(metric), dict) else {}
        row[f"test_{column}"] = spread.get("mean")
        row[f"test_{column}_std"] = spread.get("std")
    row["stage"] = f"cv {status.get('scheme', '')}".strip()
    row["n_splits"] = summary.get("n_splits")


def leaderboard(paths: list[Path], sort: str = "test_balanced_accuracy", include_incomplete: bool = False) -> "pd.DataFrame":
    """All complete runs under ``paths`` as a table sorted by ``sort`` (best first): every column.

    Evaluation runs (``test``/``validate``/``predict``) are listed in the ``evaluations`` column of the
    fit they evaluated when that fit is among the runs, else as rows of their own. With
    ``include_incomplete``, failed, running, dead and broken runs follow the complete ones. Fits get
    ``<split>_<metric>_lo``/``_hi`` confidence intervals (:data:`BOOTSTRAP_METRICS`), every run the
    hyper-parameters that differ between runs of its model, and ``noise`` compares each run's
    interval of ``sort`` with the leader's.
    """
    import pandas as pd

    rows = _attach_evaluations([run_row(run) for run in find_runs(paths)])
    table = pd.DataFrame(rows)
    if table.empty:
        raise RunError(f"no runs found under {', '.join(map(str, paths))} (a run directory holds status.json)")
    if not include_incomplete:
        table = table[table["status"] == "complete"]
        if table.empty:
            raise RunError("no complete runs to compare; pass --all to list failed, running, dead and broken ones too")
    if sort not in table.columns:
        metrics = [c for c in table.columns if c.startswith(("val_", "test_")) and not c.endswith(("_lo", "_hi"))]
        raise RunError(f"cannot sort by {sort!r}; choose one of {', '.join(metrics + ['train_seconds'])}")
    scores = [c for c in table.columns if c.startswith(("val_", "test_")) or c == "train_seconds"]
    table = _with_intervals(table.assign(**{c: pd.to_numeric(table[c], errors="coerce") for c in scores}))
    ascending = sort.endswith(LOWER_IS_BETTER)
    table = table.assign(_unfinished=table["status"] != "complete")
    table = table.sort_values(["_unfinished", sort], ascending=[True, ascending], na_position="last", kind="stable")
    table = table.drop(columns="_unfinished").reset_index(drop=True)
    table["noise"] = _noise(table, sort)
    return _integers(_with_hyper_parameters(table))


DEFAULT_COLUMNS = [
    "model", "stage", "horizon", "data", "val_balanced_accuracy", "test_balanced_accuracy", "test_f1_macro",
    "test_log_loss", "test_ece", "test_sharpe", "test_ic_mean", "train_seconds",
]


def compare_runs(paths: list[Path], sort: str = "test_balanced_accuracy", include_incomplete: bool = False,
                 top: int | None = None) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """``(every run with every column, the table shown)``: what ``mlfactory compare`` prints and writes.

    The shown table has the identity and stage of each run, the hyper-parameters that differ, the
    main scores with the confidence interval of ``sort`` beside it (``<sort>_lo``, ``<sort>_hi``,
    ``noise``), a cross-validation's spread (``*_std``, ``n_splits``), evaluations and the run
    directory; ``top`` keeps the best N rows.
    """
    if top is not None and top < 1:
        raise RunError(f"top={top}: pass a positive number of runs to show, or None for all")
    table = leaderboard(paths, sort=sort, include_incomplete=include_incomplete)
    params = [c for c in table.columns if c.startswith("hp.")]
    columns = [c for c in DEFAULT_COLUMNS if c in table]
    columns[columns.index("data") + 1:columns.index("data") + 1] = params
    if sort not in columns:
        columns.append(sort)
    if "n_splits" in table and table["n_splits"].notna().any():  # cross-validations: mean over splits, and spread
        spread = f"{sort}_std" if f"{sort}_std" in table else "test_balanced_accuracy_std"
        at = columns.index(spread.removesuffix("_std")) + 1 if spread.removesuffix("_std") in columns else len(columns)
        columns[at:at] = [spread, "n_splits"]
    at = columns.index(sort) + 1
    interval = [c for c in (f"{sort}_lo", f"{sort}_hi") if c in table and table[c].notna().any()]
    columns[at:at] = interval + (["noise"] if interval else [])
    for extra in ("evaluates", "evaluations"):
        if table[extra].notna().any():
            columns.append(extra)
    if include_incomplete:
        columns[1:1] = ["status", "problem"]
    columns.append("run_dir")
    shown = table[list(dict.fromkeys(columns))]
    return table, (shown.head(top) if top else shown).reset_index(drop=True)


def leaderboard_figure(table: "pd.DataFrame", metric: str) -> Any:
    """One point per complete run for ``metric``, best on top, with its interval and the chance line.

    The whiskers are a fit's 95 % block-bootstrap interval, or a cross-validation's mean ± std over
    its splits (a square). The leader is dark, runs within its noise are pale, runs clearly behind it
    mid-blue, so a ranking inside the noise does not read as one. Unfinished runs are left out.
    """
    from mlfactory.evaluation.plots import _pyplot

    plt = _pyplot()
    shown = table[table["status"] == "complete"].dropna(subset=[metric]).head(30).iloc[::-1].reset_index(drop=True)
    run_ids = shown["run_id"].astype(str)
    labels = shown["model"].astype(str) + " " + run_ids.where(run_ids.str.len() <= 10, "…" + run_ids.str[-6:])
    labels = labels + " (" + shown["stage"].fillna("?").astype(str) + ")"
    values = shown[metric].to_numpy(dtype=float)
    low, high = np.full(len(shown), np.nan), np.full(len(shown), np.nan)
    if f"{metric}_lo" in shown:
        low, high = np.array(shown[f"{metric}_lo"], dtype=float), np.array(shown[f"{metric}_hi"], dtype=float)
    is_cv = np.zeros(len(shown), dtype=bool)
    if f"{metric}_std" in shown:  # cross-validations: the spread over splits
        std = np.array(shown[f"{metric}_std"], dtype=float)
        is_cv = np.isnan(low) & ~np.isnan(std)
        low[is_cv], high[is_cv] = values[is_cv] - std[is_cv], values[is_cv] + std[is_cv]
    # a run's mark; "none": no interval of this metric (a cross-validation, or a score not bootstrapped)
    noise = shown["noise"].fillna("none").to_numpy() if "noise" in shown else np.full(len(shown), "none")
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(shown) + 2.0))
    y = np.arange(len(shown))
    styles = {"leader": ("#1f4e79", "o", "leader"), "within noise": ("#9dc3e6", "o", "within the leader's noise"),
              "": ("#2e75b6", "o", "clearly behind the leader"), "none": ("#7f7f7f", "o", "no interval")}
    for mark, (colour, shape, name) in styles.items():
        for cv in (False, True):
            chosen = (noise == mark) & (is_cv == cv)
            if not chosen.any():
                continue
            errors = np.nan_to_num(np.vstack([values[chosen] - low[chosen], high[chosen] - values[chosen]]))
            ax.errorbar(values[chosen], y[chosen], xerr=errors, fmt="s" if cv else shape, color=colour, ecolor=colour,
                        capsize=3, ms=7, label="cv, mean ± std over splits" if cv else name)
    chance = CHANCE.get(metric.split("_", 1)[1] if metric.startswith(("val_", "test_")) else metric)
    if chance is not None:
        ax.axvline(chance, color="#c00000", ls="--", lw=1, label=f"chance ({chance:.3g})")
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, len(shown) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    intervals = "whiskers: 95% block-bootstrap interval" if (noise != "none").any() else "no bootstrap interval"
    ax.set_xlabel(f"{metric}  ({intervals})")
    ax.set_title(f"mlfactory leaderboard: {metric}, best on top")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.4 / max(len(shown), 1)), ncol=2, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


# --- confidence intervals ----------------------------------------------------------------------
def time_blocks(timestamps: np.ndarray, min_blocks: int = MIN_BLOCKS) -> tuple[np.ndarray, str]:
    """Each sample's block for the bootstrap, and the block length in words.

    Blocks are calendar days (UTC) when the samples span at least ``min_blocks`` days; a shorter span
    is cut into ``min_blocks`` equal periods, so a one-day test split still has blocks to resample.
    """
    ns = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)
    day = 86_400 * 10**9
    start, span = ns.min(), ns.max() - ns.min()
    if span >= min_blocks * day:
        days = (ns // day) - (start // day)
        return np.unique(days, return_inverse=True)[1], "1 day"
    length = max(span / min_blocks, 1.0)
    blocks = np.minimum(((ns - start) / length).astype(np.int64), min_blocks - 1)
    return np.unique(blocks, return_inverse=True)[1], f"{length / 60e9:.0f} min"


def confusion_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro F1 of stacked (..., 3, 3) confusion matrices (row = true class).

    The same definitions as :func:`mlfactory.evaluation.classification.classification_report`.
    """
    support, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1e-300), 0.0)
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1e-300), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    present = support > 0
    n_present = np.maximum(present.sum(axis=-1), 1)
    return {
        "accuracy": hits.sum(axis=-1) / np.maximum(support.sum(axis=-1), 1),
        "balanced_accuracy": (recall * present).sum(axis=-1) / n_present,
        "f1_macro": (f1 * present).sum(axis=-1) / n_present,
    }


def bootstrap_ci(labels: np.ndarray, predicted: np.ndarray, timestamps: np.ndarray, level: float = 0.95,
                 samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Percentile confidence intervals of :data:`BOOTSTRAP_METRICS` from a block bootstrap over time.

    The samples are grouped into blocks (:func:`time_blocks`), and ``samples`` times as many blocks as
    there are are drawn with replacement; each draw's score is computed from the summed confusion
    matrices of its blocks. Resampling whole days keeps the dependence inside a day (overlapping
    label windows, a shared market regime) that resampling single rows would ignore.

    Returns ``{metric: (low, high)}`` plus ``blocks`` (their number) and ``block`` (their length).
    """
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    block, length = time_blocks(timestamps)
    n_blocks = int(block.max()) + 1
    per_block = np.zeros((n_blocks, 9))
    np.add.at(per_block, (block, 3 * labels + predicted), 1.0)
    draws = np.random.default_rng(seed).multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=samples)
    scores = confusion_scores((draws @ per_block).reshape(samples, 3, 3))
    tail = 100 * (1 - level) / 2
    result: dict[str, Any] = {m: tuple(float(q) for q in np.percentile(scores[m], [tail, 100 - tail]))
                              for m in BOOTSTRAP_METRICS}
    return {**result, "blocks": n_blocks, "block": length}


def sharpe_ci(strategy: np.ndarray, timestamps: np.ndarray, horizon: int, periods_per_year: float,
              level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """The annualised Sharpe ratio of the strategy returns and its block-bootstrap interval.

    The periods are the trading report's (:func:`mlfactory.evaluation.trading.trading_report`): per
    timestamp the mean strategy return over the symbols, every ``horizon``-th timestamp. Those
    periods are grouped into blocks (:func:`time_blocks`) and resampled as in :func:`bootstrap_ci`;
    each draw's ratio is mean / std (ddof 1) of its periods, times √``periods_per_year``.

    Returns ``sharpe`` (the point estimate), ``interval`` (low, high), ``blocks`` and ``block``.
    """
    import pandas as pd

    per_period = pd.Series(np.asarray(strategy, dtype=float)).groupby(np.asarray(timestamps)).mean().sort_index()
    spaced = per_period.iloc[::horizon]
    values = spaced.to_numpy()
    block, length = time_blocks(spaced.index.to_numpy())
    n_blocks = int(block.max()) + 1
    sums = np.stack([np.bincount(block, minlength=n_blocks), np.bincount(block, values, n_blocks),
                     np.bincount(block, values**2, n_blocks)], axis=1)
    draws = np.random.default_rng(seed).multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=samples)
    count, total, squares = (draws @ sums).T
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (squares - total**2 / count) / (count - 1)
        ratios = total / count / np.sqrt(variance) * np.sqrt(periods_per_year)
    point = values.mean() / values.std(ddof=1) * np.sqrt(periods_per_year) if len(values) > 1 else float("nan")
    tail = 100 * (1 - level) / 2
    finite = ratios[np.isfinite(ratios)]
    interval = tuple(float(q) for q in np.percentile(finite, [tail, 100 - tail])) if len(finite) else (None, None)
    return {"sharpe": float(point), "interval": interval, "blocks": n_blocks, "block": length}


def prediction_table(path: Path) -> "pd.DataFrame | None":
    """A ``<split>_predictions.npz`` as a DataFrame: ``datetime`` (UTC), ``symbol``, ``label``, ``p_down``,
    ``p_neutral``, ``p_up``, ``predicted_class``, ``confidence``, ``row``; None when it cannot be read."""
    import pandas as pd

    from mlfactory.data.contract import CLASS_NAMES

    try:
        with np.load(path, allow_pickle=False) as saved:
            probs = saved["probabilities"]
            return pd.DataFrame({
                "datetime": pd.to_datetime(saved["datetime"]).tz_localize("UTC"),
                "symbol": saved["symbol"].astype(str),
                "label": saved["label"].astype(np.int64),
                **{f"p_{name}": probs[:, i] for i, name in enumerate(CLASS_NAMES)},
                "predicted_class": saved["predicted_class"],
                "confidence": saved["confidence"],
                "row": saved["row"],
            })
    except (OSError, ValueError, KeyError, IndexError):
        return None


def with_forward_returns(table: "pd.DataFrame", data: dict[str, Any], split: str,
                         build_sample: bool = False) -> "pd.DataFrame":
    """``table`` with ``fwd_return`` joined on (datetime, symbol) from the run's split file, when it is there.

    ``data`` is the run's data settings (``training_config.json``). A run on the embedded sample data
    reads its cache; ``build_sample`` builds it first when this machine has none (as a fit would).
    """
    from mlfactory.data.contract import fwd_return_column, split_file

    horizon = data.get("horizon")
    if split not in ("train", "val", "test") or not horizon or "data_dir" not in data:
        return table
    if data["data_dir"]:
        folder = Path(data["data_dir"])
    else:
        from mlfactory.data.synthetic import SAMPLE_VERSION, default_data_dir

        variant = "signal" if data.get("sample_signal", True) else "nosignal"
        cache = os.environ.get("MLFACTORY_CACHE")  # where default_data_dir keeps it, without building it
        folder = Path(cache).expanduser() if cache else Path.home() / ".cache" / "mlfactory"
        folder = folder / f"{SAMPLE_VERSION}-{variant}"
        if build_sample and not folder.is_dir():
            folder = default_data_dir(signal=variant == "signal")
    path = folder / split_file(split)
    try:
        frame = _split_returns(str(path), fwd_return_column(int(horizon)), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return table
    return table if frame is None else table.merge(frame, on=["datetime", "symbol"], how="left")


@lru_cache(maxsize=8)
def _split_returns(path: str, column: str, mtime_ns: int) -> "pd.DataFrame | None":
    """``datetime``, ``symbol``, ``fwd_return`` of a split file (read once per version of the file), or None."""
    import pandas as pd
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    if column not in names:
        return None
    frame = pd.read_parquet(path, columns=["datetime", column] + (["symbol"] if "symbol" in names else []))
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
    frame["symbol"] = frame["symbol"].astype(str) if "symbol" in frame else ""  # one series: predictions say ""
    return frame.rename(columns={column: "fwd_return"}).drop_duplicates(["datetime", "symbol"])


def _sharpe_interval(run: Path, split: str) -> dict[str, Any] | None:
    """The test/val Sharpe interval of a fit whose split file still holds the forward returns."""
    evaluation, _ = _read_record(run, EVALUATION)
    training, _ = _read_record(run, TRAINING_CONFIG)
    trading = ((evaluation or {}).get(split) or {}).get("trading")
    data = (training or {}).get("data")
    if not isinstance(trading, dict) or not isinstance(data, dict) or not trading.get("sharpe_periods_per_year"):
        return None
    table = prediction_table(run / PREDICTIONS.format(split=split))
    if table is None or table.empty:
        return None
    table = with_forward_returns(table, data, split)
    if "fwd_return" not in table or table["fwd_return"].isna().any():
        return None  # the split file is gone or no longer the one the run saw
    strategy = (table["predicted_class"].to_numpy() - 1) * table["fwd_return"].to_numpy(dtype=float)
    return sharpe_ci(strategy, table["datetime"].dt.tz_localize(None).to_numpy(), int(data["horizon"]),
                     float(trading["sharpe_periods_per_year"]))


def _with_intervals(table: "pd.DataFrame") -> "pd.DataFrame":
    """``<split>_<metric>_lo``/``_hi`` for every complete run that saved that split's predictions."""
    columns: dict[str, list[Any]] = {f"{split}_{m}_{end}": [] for split in ("val", "test")
                                     for m in BOOTSTRAP_METRICS for end in ("lo", "hi")}
    columns.update({f"{split}_sharpe_{end}": [] for split in ("val", "test") for end in ("lo", "hi")})
    columns["ci_block"] = []
    for run_dir, state in zip(table["run_dir"], table["status"]):
        block = None
        for split in ("val", "test"):
            interval = _interval(Path(run_dir), split) if state == "complete" else None
            for m in BOOTSTRAP_METRICS:
                low, high = interval[m] if interval else (None, None)
                columns[f"{split}_{m}_lo"].append(low)
                columns[f"{split}_{m}_hi"].append(high)
            sharpe = _sharpe_interval(Path(run_dir), split) if interval else None
            low, high = sharpe["interval"] if sharpe else (None, None)
            columns[f"{split}_sharpe_lo"].append(low)
            columns[f"{split}_sharpe_hi"].append(high)
            block = f"{interval['blocks']} x {interval['block']}" if interval else block  # test's, when it has one
        columns["ci_block"].append(block)
    return table.assign(**columns)


def _interval(run: Path, split: str) -> dict[str, Any] | None:
    """The bootstrap intervals of one split's saved predictions; None without a readable file."""
    path = run / PREDICTIONS.format(split=split)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            labels, predicted, timestamps = saved["label"], saved["predicted_class"], saved["datetime"]
    except (OSError, ValueError, KeyError):
        return None
    if len(labels) == 0:
        return None
    return bootstrap_ci(labels, predicted, timestamps)


def _noise(table: "pd.DataFrame", sort: str) -> list[str | None]:
    """``leader`` for the best run with an interval of ``sort``; ``within noise`` where a run's interval
    overlaps the leader's; empty where it does not; None without an interval."""
    low, high = f"{sort}_lo", f"{sort}_hi"
    if low not in table:
        return [None] * len(table)
    has = (table["status"] == "complete") & table[low].notna()
    if not has.any():
        return [None] * len(table)
    leader = has.idxmax()
    lead_low, lead_high = table.loc[leader, low], table.loc[leader, high]
    marks: list[str | None] = []
    for index, row in table.iterrows():
        if index == leader:
            marks.append("leader")
        elif not has[index]:
            marks.append(None)
        else:
            marks.append("within noise" if row[low] <= lead_high and row[high] >= lead_low else "")
    return marks


# --- rows: evaluations, hyper-parameters, integers ---------------------------------------------
def _evaluated_run(run: Path) -> str | None:
    """The run directory a test/validate/predict run evaluated: the parent run it sits in, or the run of
    the ``ckpt_path`` in its ``config.yaml``; else the checkpoint path; None when nothing says."""
    for parent in run.parents[:3]:  # <fit>/evaluations/<stage>-<id>, or a folder of the user's within it
        if (parent / STATUS).is_file():
            return str(parent)
    ckpt = _ckpt_path(run)
    if ckpt is None:
        return None
    path = Path(ckpt)
    if path.parent.name == "checkpoints" and (path.parent.parent / STATUS).is_file():
        return str(path.parent.parent)
    return ckpt


def _ckpt_path(run: Path) -> str | None:
    """``ckpt_path`` of the run's saved ``config.yaml`` (LightningCLI writes it), or None."""
    path = run / CONFIG_YAML
    if not path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # unreadable: the run says nothing about its checkpoint
        return None
    ckpt = config.get("ckpt_path") if isinstance(config, dict) else None
    return str(ckpt) if ckpt else None


def _attach_evaluations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation rows whose fit is listed join its ``evaluations`` column; the others stay, labelled."""
    by_dir = {str(Path(r["run_dir"]).resolve()): r for r in rows if r["stage"] not in EVALUATION_STAGES}
    kept = []
    for row in rows:
        target = by_dir.get(str(Path(row["evaluates"]).resolve())) if row["evaluates"] else None
        if row["stage"] in EVALUATION_STAGES and target is not None:
            name = row["run_id"] if str(row["run_id"]).startswith(row["stage"]) else f"{row['stage']} {row['run_id']}"
            entry = name if row["status"] == "complete" else f"{name} ({row['status']})"
            target["evaluations"] = f"{target['evaluations']}; {entry}" if target["evaluations"] else entry
        else:
            kept.append(row)
    return kept


def _hyper_parameters(model: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The model's init arguments and the data settings of a run, as flat ``hp.<name>`` values."""
    params: dict[str, Any] = {}
    init = model.get("init_args") if isinstance(model.get("init_args"), dict) else {}
    for source, prefix in ((init, "hp."), (data, "hp.data.")):
        for key, value in source.items():
            if key in NOT_HYPER_PARAMETERS or key.startswith("_"):
                continue
            params[prefix + key] = value if isinstance(value, (int, float, str, bool, type(None))) else json.dumps(
                value, sort_keys=True, default=str)
    return params


def _with_hyper_parameters(table: "pd.DataFrame") -> "pd.DataFrame":
    """Columns for the hyper-parameters that differ between the runs of one model (or between any runs,
    for data settings); the rest say nothing about why two runs differ and are left out."""
    import pandas as pd

    # object columns keep each value's own type: 64 prints as 64 beside a run without the argument
    params = pd.DataFrame(list(table["_params"]), index=table.index, dtype=object)
    keep = []
    for column in params.columns:
        values = params[column].map(lambda v: json.dumps(v, default=str))
        groups = [values] if column.startswith("hp.data.") else [g for _, g in values.groupby(table["model"])]
        if any(g.nunique(dropna=False) > 1 for g in groups):
            keep.append(column)
    return pd.concat([table.drop(columns="_params"), params[sorted(keep)]], axis=1)


def _integers(table: "pd.DataFrame") -> "pd.DataFrame":
    """Counts print as integers in every table, whatever else is missing (pandas would make them 5.0)."""
    import pandas as pd

    for column in INTEGER_COLUMNS:
        if column not in table:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().sum() == table[column].notna().sum() and (values.dropna() % 1 == 0).all():
            table[column] = values.astype("Int64")
    return table


def _read_record(run: Path, relative: str) -> tuple[dict | None, str | None]:
    """A record file's JSON object, or why it cannot be read; a missing file is ``(None, None)``."""
    path = run / relative
    if not path.exists():
        return None, None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"{relative} is unreadable ({type(err).__name__})"
    if not isinstance(value, dict):
        return None, f"{relative} is not a JSON object"
    return value, None


def _data_label(data: dict[str, Any]) -> str:
    """The split directory's name; ``sample`` only when the config says the embedded sample was used."""
    if "data_dir" not in data:
        return "unknown"  # no readable training config: the run may have used any data
    return Path(str(data["data_dir"])).name if data["data_dir"] else "sample"
