"""The leaderboard of runs: one row per run directory, read from its JSON record (no torch import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    """Run directories (folders with a status.json) at or below each path."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise RunError(f"{path} does not exist; pass run directories or a folder of runs such as lightning_logs/")
        if (path / "status.json").is_file():
            runs.append(path)
        else:
            runs.extend(sorted(p.parent for p in path.rglob("status.json")))
    return runs


def run_row(run: Path) -> dict[str, Any]:
    """One leaderboard row: identity, status, data, every split metric, training time."""
    status = _read(run / "status.json") or {}
    model = _read(run / "config" / "model_config.json") or {}
    training = _read(run / "config" / "training_config.json") or {}
    evaluation = _read(run / "metrics" / "evaluation_metrics.json") or {}
    timing = _read(run / "metrics" / "training_metrics.json") or {}
    data = training.get("data", {})
    row: dict[str, Any] = {
        "model": model.get("name") or run.parent.name,
        "run_id": run.name,
        "status": status.get("status", "unknown"),
        "stage": status.get("stage"),
        "horizon": data.get("horizon"),
        "data": Path(data["data_dir"]).name if data.get("data_dir") else "sample",
    }
    for split in ("val", "test"):
        report = evaluation.get(split, {})
        for name, keys in SPLIT_METRICS.items():
            value: Any = report
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            row[f"{split}_{name}"] = value
    row["train_seconds"] = timing.get("train_seconds")
    row["run_dir"] = str(run)
    return row


def leaderboard(paths: list[Path], sort: str = "test_balanced_accuracy", include_incomplete: bool = False) -> "pd.DataFrame":
    """All runs under ``paths`` as a table sorted by ``sort`` (best first)."""
    import pandas as pd

    rows = [run_row(run) for run in find_runs(paths)]
    table = pd.DataFrame(rows)
    if table.empty:
        raise RunError(f"no runs found under {', '.join(map(str, paths))} (a run directory holds status.json)")
    if not include_incomplete:
        table = table[table["status"] == "complete"]
        if table.empty:
            raise RunError("no complete runs to compare; pass --all to list failed and running ones too")
    if sort not in table.columns:
        metrics = [c for c in table.columns if c.startswith(("val_", "test_"))] + ["train_seconds"]
        raise RunError(f"cannot sort by {sort!r}; choose one of {', '.join(metrics)}")
    ascending = sort.endswith(LOWER_IS_BETTER)
    return table.sort_values(sort, ascending=ascending, na_position="last").reset_index(drop=True)


def leaderboard_figure(table: "pd.DataFrame", metric: str) -> Any:
    """A horizontal bar per run for ``metric``, best on top."""
    from mlfactory.evaluation.plots import _pyplot

    plt = _pyplot()
    shown = table.dropna(subset=[metric]).head(30).iloc[::-1]
    labels = shown["model"] + " " + shown["run_id"].str[-6:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.3))
    ax.barh(labels, shown[metric])
    ax.set_xlabel(metric)
    ax.set_title("mlfactory leaderboard")
    fig.tight_layout()
    return fig


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
