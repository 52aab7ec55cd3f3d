"""The leaderboard of runs: one row per run directory, read from its JSON record (no torch import)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
CV_METRICS = ("balanced_accuracy", "log_loss", "direction_auc")
"""What a cross-validation's summary gives per split: its ``test_*`` columns hold the mean across splits."""
KNOWN_STATUSES = ("running", "failed", "complete")


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
    elif state == "failed":
        why = status.get("error")
    data = training.get("data") if isinstance(training.get("data"), dict) else {}
    row: dict[str, Any] = {
        "model": model.get("name") or run.parent.name,
        "run_id": run.name,
        "status": state,
        "stage": stage,
        "horizon": data.get("horizon"),
        "data": _data_label(data),
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
    for metric in CV_METRICS:
        spread = across.get(metric) if isinstance(across.get(metric), dict) else {}
        row[f"test_{metric}"] = spread.get("mean")
        row[f"test_{metric}_std"] = spread.get("std")
    row["stage"] = f"cv {status.get('scheme', '')}".strip()
    row["n_splits"] = summary.get("n_splits")


def leaderboard(paths: list[Path], sort: str = "test_balanced_accuracy", include_incomplete: bool = False) -> "pd.DataFrame":
    """All complete runs under ``paths`` as a table sorted by ``sort`` (best first).

    With ``include_incomplete``, failed, running, dead and broken runs follow the complete ones.
    """
    import pandas as pd

    rows = [run_row(run) for run in find_runs(paths)]
    table = pd.DataFrame(rows)
    if table.empty:
        raise RunError(f"no runs found under {', '.join(map(str, paths))} (a run directory holds status.json)")
    if not include_incomplete:
        table = table[table["status"] == "complete"]
        if table.empty:
            raise RunError("no complete runs to compare; pass --all to list failed, running, dead and broken ones too")
    if sort not in table.columns:
        metrics = [c for c in table.columns if c.startswith(("val_", "test_"))] + ["train_seconds"]
        raise RunError(f"cannot sort by {sort!r}; choose one of {', '.join(metrics)}")
    ascending = sort.endswith(LOWER_IS_BETTER)
    table = table.assign(_unfinished=table["status"] != "complete")
    table = table.sort_values(["_unfinished", sort], ascending=[True, ascending], na_position="last")
    return table.drop(columns="_unfinished").reset_index(drop=True)


def leaderboard_figure(table: "pd.DataFrame", metric: str) -> Any:
    """A horizontal bar per complete run for ``metric``, best on top (unfinished runs are no results)."""
    from mlfactory.evaluation.plots import _pyplot

    plt = _pyplot()
    shown = table[table["status"] == "complete"].dropna(subset=[metric]).head(30).iloc[::-1]
    labels = shown["model"] + " " + shown["run_id"].str[-6:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.3))
    ax.barh(labels, shown[metric])
    ax.set_xlabel(metric)
    ax.set_title("mlfactory leaderboard")
    fig.tight_layout()
    return fig


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
