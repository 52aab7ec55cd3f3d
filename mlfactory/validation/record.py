"""The record of a cross-validation: status, folds, fold diagram, stitched predictions and the summary.

Layout and fields: docs/validation.md ("What it writes"); ``mlfactory.load_run`` and ``mlfactory
compare`` read these files, so their names and columns stay as documented.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlfactory.atomic import write_json
from mlfactory.data.contract import CLASS_NAMES
from mlfactory.data.split import SplitData
from mlfactory.validation.splits import ROLES, CVPlan

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PROB_COLUMNS = [f"p_{name}" for name in CLASS_NAMES]
SCORES = ("balanced_accuracy", "log_loss", "direction_auc")
TRADING_SCORES = ("sharpe_annualised", "ic_mean")
# role -> colour of the fold diagram (ROLES order)
ROLE_COLOURS = {"train": "#3b6fb6", "val": "#9cc3ec", "test": "#e07b39", "purged": "#c0392b", "embargoed": "#8e44ad",
                "unused": "#ececec"}


def folds_table(plan: CVPlan, dev: SplitData) -> Any:
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
    """The fold diagram: one band per split over the first symbol's rows in time order, coloured by role.

    Group boundaries are drawn as thin lines and numbered on top; each band is labelled with its
    split and the groups it tests; the legend names every role with its row count in the first split.
    Purged and embargoed stretches (a horizon's worth of rows among thousands) are drawn at least
    0.6 % of the width wide, so they stay visible.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from mlfactory.evaluation.plots import _pyplot

    plt = _pyplot()
    first = np.flatnonzero(dev.symbol_codes == dev.symbol_codes[0])
    image = np.stack([s.roles[first] for s in plan.splits])
    n_splits = len(plan.splits)
    fig, ax = plt.subplots(figsize=(10, min(0.32 * n_splits + 2.2, 12)))
    ax.imshow(image, aspect="auto", interpolation="nearest", cmap=ListedColormap(list(ROLE_COLOURS.values())),
              vmin=-0.5, vmax=len(ROLES) - 0.5)
    _mark_thin_roles(ax, image)
    groups = plan.groups[first]
    edges = np.flatnonzero(np.diff(groups)) + 0.5
    for edge in edges:
        ax.axvline(edge, color="white", linewidth=1.2, zorder=2)
    centres = [(np.flatnonzero(groups == g).mean()) for g in np.unique(groups)]
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, [f"g{g}" for g in np.unique(groups)], fontsize=7)
    top.tick_params(length=0)
    labels = [f"{s.index}  (tests {','.join(f'g{g}' for g in s.test_groups)})" for s in plan.splits]
    step = max(1, n_splits // 30)  # at most about 30 labels stay readable
    ax.set_yticks(range(0, n_splits, step), labels[::step], fontsize=7 if n_splits > 8 else 8)
    ax.set_ylabel("split")
    ticks = np.linspace(0, len(first) - 1, 6).astype(int)
    ax.set_xticks(ticks, [str(dev.timestamps[first][t])[:16].replace("T", " ") for t in ticks], fontsize=7)
    symbol = dev.symbols[dev.symbol_codes[0]]
    where = f", rows of {symbol}" if symbol else ""
    ax.set_title(f"{plan.scheme}: {n_splits} split(s), {plan.n_paths} path(s){where}, time left to right", fontsize=10)
    counts = np.bincount(image[0], minlength=len(ROLES))
    handles = [Patch(facecolor=colour, edgecolor="#888888", linewidth=0.5,
                     label=f"{role} ({counts[i]} rows in split {plan.splits[0].index})" if counts[i] else role)
               for i, (role, colour) in enumerate(ROLE_COLOURS.items())]
    ax.legend(handles=handles, ncol=3, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return fig


def _mark_thin_roles(ax: Any, image: np.ndarray, min_share: float = 0.006) -> None:
    """Draw every run of purged or embargoed rows at least ``min_share`` of the width wide: a purge grows
    to the left of where it ends (it precedes a test or validation stretch), an embargo to the right."""
    from matplotlib.patches import Rectangle

    width = max(1.0, min_share * image.shape[1])
    for role in ("purged", "embargoed"):
        code = ROLES.index(role)
        for band, roles in enumerate(image):
            marked = np.concatenate([[False], roles == code, [False]])
            starts = np.flatnonzero(marked[1:] & ~marked[:-1])
            ends = np.flatnonzero(~marked[1:] & marked[:-1])
            for start, end in zip(starts, ends):
                size = max(float(end - start), width)
                left = end - size if role == "purged" else start
                ax.add_patch(Rectangle((left - 0.5, band - 0.5), size, 1, facecolor=ROLE_COLOURS[role],
                                       edgecolor="none", zorder=3))


def scores(probs: np.ndarray, labels: np.ndarray, trading: tuple[np.ndarray, np.ndarray, int, np.ndarray] | None = None
           ) -> dict[str, Any]:
    """Balanced accuracy, log loss and direction AUC of predictions (evaluation/classification.py); with
    ``trading = (fwd_returns, timestamps, horizon, calendar)`` also the annualised Sharpe ratio and the
    mean daily information coefficient (evaluation/trading.py, the same as a fit's test metrics)."""
    from mlfactory.evaluation.classification import classification_report

    report = classification_report(probs, labels)
    result = {key: report[key] for key in ("n_samples", *SCORES)}
    if trading is not None:
        from mlfactory.evaluation.trading import trading_report

        fwd, times, horizon, calendar = trading
        finite = np.isfinite(fwd)
        report = trading_report(probs[finite], fwd[finite], times[finite], horizon, calendar=calendar)
        result.update({key: report.get(key) for key in TRADING_SCORES})
    return result


def distribution(values: list[float | None]) -> dict[str, Any]:
    """Mean, std (ddof 1), min, max and the QUANTILES of the defined values; ``{"n": 0}`` without any."""
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(kept):
        return {"n": 0}
    return {"n": int(len(kept)), "mean": float(kept.mean()), "std": float(kept.std(ddof=1)) if len(kept) > 1 else 0.0,
            "min": float(kept.min()), "max": float(kept.max()),
            "quantiles": {str(q): float(np.quantile(kept, q)) for q in QUANTILES}}


def predictions_table(plan: CVPlan, dev: SplitData, predictions: dict[int, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Every path's stitched out-of-sample predictions: one row per (path, development row predicted).

    ``predictions`` maps a split to its (test rows, probabilities).
    """
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


def path_scores(table: Any, horizon: int, calendar: np.ndarray) -> list[dict[str, Any]]:
    """The scores of every path of :func:`predictions_table`."""
    per_path = []
    for path, frame in table.groupby("path", sort=True):
        market = None if "fwd_return" not in frame else (
            frame["fwd_return"].to_numpy(), frame["datetime"].to_numpy(), horizon, calendar)
        probs, labels = frame[PROB_COLUMNS].to_numpy(), frame["label"].to_numpy()
        per_path.append({"path": int(path), **scores(probs, labels, market)})
    return per_path


def across(entries: list[dict[str, Any]], trading: bool) -> dict[str, Any]:
    """The distribution of every score over ``entries`` (splits or paths)."""
    metrics = SCORES + (TRADING_SCORES if trading else ())
    return {m: distribution([e.get(m) for e in entries]) for m in metrics}


class Status:
    """``status.json`` of a cross-validation, with the rules of a fit's: pid and host, ``created`` kept."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "status.json"
        self.started = time.time()
        self.created = _now()

    def write(self, status: str, **details: Any) -> None:
        """Replace the file (atomically) with ``status`` and ``details``."""
        write_json(self.path, {"status": status, "created": self.created, "updated": _now(), "pid": os.getpid(),
                               "host": socket.gethostname(), "command": "cv", "stage": "cv", **details})


def mark_unfinished_splits(run_dir: Path, why: str) -> None:
    """Mark every ``splits/<k>/status.json`` that still says ``running`` as ``failed`` with ``why``.

    After a failed split the others are stopped; their own records must not read as running (or,
    once their process is gone, merely dead), but as failed with the reason.
    """
    import json

    for status_file in sorted((run_dir / "splits").glob("*/status.json")):
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            continue
        if status.get("status") == "running":
            write_json(status_file, {**status, "status": "failed", "updated": _now(), "error": why})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
