"""Train every registered model's recipe on the embedded sample data and tabulate time and quality.

    python benchmarks/models_default.py [--models xgboost lstm ...] [--max-epochs 5] [--table models-default]

Each model runs `mlfactory fit --config mlfactory/recipes/<name>.yaml` in a fresh process, on the
planted-signal data and on the no-signal variant (the leak canary), with neural models capped at
--max-epochs (permutation importance and figures are skipped: the table reports neither). The table
(train seconds, val/test balanced accuracy, test direction AUC and IC, the no-signal test balanced
accuracy and direction AUC, and when the row was measured with the machine's load) is printed and
merged into the table between the markers ``<!-- {table}:start -->`` and ``<!-- {table}:end -->`` in
docs/models.md after each model: a model run again replaces its row, the rows of models not run are
kept (so a table can be filled in several sittings), and the rows are ordered as ``mlfactory models``
lists them. A table with other columns is replaced. A no-signal score outside the leak canary's band
is flagged on stderr. ``--code DIR`` runs the fits on another copy of the code (such as
``git archive HEAD | tar -x -C DIR``: the committed code, not a shared checkout's edits in progress)
with this checkout's Python, and still writes this checkout's docs/models.md. The comparison of
indicator and multi-resolution input is this script too:
``--models lstm multires --max-epochs 3 --table multires-vs-indicators``.

``--epoch-time`` times instead what a new user meets first: ``mlfactory fit --model NAME
--trainer.max_epochs 1 --data.threads T`` (the model's defaults, not its recipe) on the embedded
default data, every model in turn in one run, so the times compare side by side; the table gives
the training seconds (Lightning's fit loop, without the run record's end-of-fit work), the ratio to
lstm's time in the same run (the target is at most 4), and the one epoch's val and test balanced
accuracy; lstm runs again last, so the table shows how far the machine's load moved meanwhile.
Table marker: ``epoch-time``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the recipes moved into the package; configs/ is the former place
RECIPES = next((d for d in (REPO / "mlfactory" / "recipes", REPO / "configs") if d.is_dir()), REPO / "configs")


def run(name: str, signal: bool, root: Path, max_epochs: int, recipe: bool = True, extra: tuple[str, ...] = (),
        code: Path = REPO) -> dict:
    """Fit ``name`` (its recipe, or its defaults) in a fresh process on the code in ``code``; its figures."""
    recipes = next((d for d in (code / "mlfactory" / "recipes", code / "configs") if d.is_dir()), RECIPES)
    model = ["--config", str(recipes / f"{name}.yaml")] if recipe else ["--model", name]
    args = [
        sys.executable, "-m", "mlfactory.cli", "fit", *model,
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(max_epochs),
        "--data.sample_signal", "true" if signal else "false",
        # neither is in the tables, and both are timed apart from train_seconds
        "--record.importance_samples", "0", "--record.plots", "false", *extra,
    ]
    result = subprocess.run(args, capture_output=True, text=True, cwd=code)  # `-m` imports from cwd first
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    run_dir = max((root / "lightning_logs" / name).iterdir(), key=lambda p: p.stat().st_mtime)
    evaluation = json.loads((run_dir / "metrics" / "evaluation_metrics.json").read_text())
    training = json.loads((run_dir / "metrics" / "training_metrics.json").read_text())
    return {
        "seconds": training["train_seconds"],
        "epochs": training["epochs"],
        "val": evaluation["val"]["balanced_accuracy"],
        "test": evaluation["test"]["balanced_accuracy"],
        "ic": (evaluation["test"].get("trading") or {}).get("ic_mean"),
        "auc": evaluation["test"].get("direction_auc"),
        "support": {label: counts["support"] for label, counts in evaluation["test"]["per_class"].items()},
        # the last epoch's training rate, as the progress bar showed it (validation and the record excluded)
        "samples_per_s": (training.get("history") or [{}])[-1].get("samples/s"),
    }


def epoch_times(names: list[str], threads: int, extra: tuple[str, ...] = ()) -> list[str]:
    """One epoch of each model's defaults on the default data, lstm first; rows of the epoch-time table."""
    names = ["lstm", *[name for name in names if name != "lstm"]]
    if len(names) > 2:  # lstm again at the end: how much the machine's load moved during the run
        names.append("lstm")
    lines = [
        f"| model | training samples/s ({threads} thread) | epoch time / lstm's | whole fit, s | val bal. acc "
        "| test bal. acc |",
        "|---|---|---|---|---|---|",
    ]
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            own = () if name == "lstm" else extra  # lstm is the reference: --fit-args are for the models timed
            result = run(name, True, Path(tmp), 1, recipe=False, extra=("--data.threads", str(threads), *own))
            label = f"{name} (again, load check)" if name == "lstm" and reference is not None else name
            if "error" in result:
                line = f"| {label} | failed: {result['error']} | | | | |"
            else:
                rate = result["samples_per_s"]
                reference = reference or rate
                line = (f"| {label} | {rate:,.0f} | {reference / rate:.2f} | {result['seconds']:.0f} | "
                        f"{result['val']:.3f} | {result['test']:.3f} |")
            print(line, flush=True)
            lines.append(line)
    return lines


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def main() -> None:
    sys.path.insert(0, str(REPO))
    from mlfactory.registry import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[s.name for s in list_models()])
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--table", default="models-default", help="the marker pair in docs/models.md to rewrite")
    parser.add_argument("--no-docs", action="store_true", help="print only; do not edit docs/models.md")
    parser.add_argument("--epoch-time", action="store_true",
                        help="time one epoch of each model's defaults against lstm's (table marker epoch-time)")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="run the fits on the code in this folder (e.g. a `git archive` export of a commit)")
    parser.add_argument("--threads", type=int, default=1, help="--data.threads of the --epoch-time fits")
    parser.add_argument("--fit-args", default="",
                        help="more `mlfactory fit` arguments for every fit (with --epoch-time, every fit but "
                             "lstm's), e.g. a model's former settings: --fit-args '--model.channels null' "
                             "(quote them as one string)")
    args = parser.parse_args()
    extra = tuple(shlex.split(args.fit_args))
    if args.epoch_time:
        neural = [s.name for s in list_models() if s.family == "neural"]
        names = args.models if "--models" in sys.argv else neural
        write_table(epoch_times(names, args.threads, extra),
                    "epoch-time" if args.table == "models-default" else args.table, args.no_docs)
        return

    names = [s.name for s in list_models()]
    header = [
        "| model | train s | epochs | val bal. acc | test bal. acc | test dir. AUC | test IC "
        "| no-signal test bal. acc | no-signal dir. AUC | measured (UTC, load) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            started, load_before = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.getloadavg()[0]
            signal = run(name, True, Path(tmp) / "signal", args.max_epochs, extra=extra, code=args.code.resolve())
            canary = run(name, False, Path(tmp) / "nosignal", args.max_epochs, extra=extra, code=args.code.resolve())
            stamp = f"{started}-{time.strftime('%H:%M', time.gmtime())}, {load_before:.1f} to {os.getloadavg()[0]:.1f}"
            line = table_row(name, signal, canary, stamp)
            print(line, flush=True)
            alarm = canary_alarm(canary)
            if alarm:
                print(f"LEAK ALARM {name}: {alarm}", file=sys.stderr, flush=True)
            if not args.no_docs:
                merge_rows(header, [line], args.table, names)


def table_row(name: str, signal: dict, canary: dict, stamp: str) -> str:
    """One row of the default-data table from the planted-signal and the no-signal fit."""
    if "error" in signal or "error" in canary:
        return f"| {name} | failed: {signal.get('error') or canary.get('error')} | | | | | | | | {stamp} |"
    return (f"| {name} | {signal['seconds']:.1f} | {signal['epochs']} | {signal['val']:.3f} | "
            f"{signal['test']:.3f} | {_number(signal['auc'])} | {_number(signal['ic'])} | "
            f"{canary['test']:.3f} | {_number(canary['auc'])} | {stamp} |")


def canary_alarm(canary: dict, horizon: int = 5) -> str:
    """Why a no-signal fit looks above chance ('' when it does not), by the contract suite's bands.

    As tests/models/test_contract.py: four standard errors at chance, inflated by sqrt(horizon) for the
    overlapping labels (the recipes' horizon is 5): balanced accuracy 1/3 +- 4 sqrt(2/n)/3 sqrt(H),
    direction AUC 0.5 +- 4 sqrt((n_up + n_down + 1) / (12 n_up n_down)) sqrt(H) (Hanley-McNeil).
    """
    if "error" in canary:
        return ""
    support = canary["support"]
    n_up, n_down = support.get("up", 0), support.get("down", 0)
    accuracy_band = 4 * math.sqrt(2 / sum(support.values())) / 3 * math.sqrt(horizon)
    reasons = []
    if abs(canary["test"] - 1 / 3) > accuracy_band:
        reasons.append(f"no-signal test balanced accuracy {canary['test']:.3f} outside 0.333 +- {accuracy_band:.3f}")
    if canary["auc"] is not None and n_up and n_down:
        auc_band = 4 * math.sqrt((n_up + n_down + 1) / (12 * n_up * n_down)) * math.sqrt(horizon)
        if abs(canary["auc"] - 0.5) > auc_band:
            reasons.append(f"no-signal direction AUC {canary['auc']:.3f} outside 0.5 +- {auc_band:.3f}")
    return "; ".join(reasons)


def merged_rows(old: list[str], header: list[str], rows: list[str], order: list[str]) -> list[str]:
    """The table ``header`` + rows: ``rows`` replace the old rows of their models, other old rows stay.

    Old rows are kept only under the same header (another header is another table). Rows are keyed by
    their first cell and ordered as ``order`` lists the names, unknown names last in their old order.
    """
    kept = old[len(header):] if old[:len(header)] == header else []
    by_name = {}
    for line in [*kept, *rows]:
        by_name[line.split("|")[1].strip()] = line
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(by_name, key=lambda n: rank.get(n, len(order)))
    return [*header, *(by_name[n] for n in names)]


def merge_rows(header: list[str], rows: list[str], marker: str, order: list[str]) -> None:
    """Merge ``rows`` into the table between the ``marker`` pair in docs/models.md (see :func:`merged_rows`)."""
    text = (REPO / "docs" / "models.md").read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    old = text.split(start, 1)[1].split(end, 1)[0].strip().splitlines() if start in text and end in text else []
    write_table(merged_rows([line.strip() for line in old], header, rows, order), marker, False)


def write_table(lines: list[str], marker: str, print_only: bool) -> None:
    """Replace the table between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->`` in docs/models.md."""
    if print_only:
        return
    table = "\n".join(lines)
    docs = REPO / "docs" / "models.md"
    text = docs.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        docs.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"updated {docs}")
    else:
        print(f"docs/models.md has no {start} ... {end} markers; table printed only")

if __name__ == "__main__":
    main()
