"""Train every registered model's recipe on the embedded sample data and tabulate time and quality.

    python benchmarks/models_default.py [--models xgboost lstm ...] [--max-epochs 5] [--table models-default]

Each model runs `mlfactory fit --config configs/<name>.yaml` in a fresh process, on the
planted-signal data and on the no-signal variant (the leak canary), with neural models capped at
--max-epochs. The table (train seconds, val/test balanced accuracy, test direction AUC and IC, and
the no-signal test balanced accuracy and direction AUC) is printed and written between the markers
``<!-- {table}:start -->`` and ``<!-- {table}:end -->`` in docs/models.md. The comparison of
indicator and multi-resolution input is this script too:
``--models lstm multires --max-epochs 3 --table multires-vs-indicators``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(name: str, signal: bool, root: Path, max_epochs: int) -> dict:
    args = [
        sys.executable, "-m", "mlfactory.cli", "fit", "--config", str(REPO / "configs" / f"{name}.yaml"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(max_epochs),
        "--data.sample_signal", "true" if signal else "false",
    ]
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
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
    }


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
    args = parser.parse_args()

    lines = [
        "| model | train s | epochs | val bal. acc | test bal. acc | test dir. AUC | test IC "
        "| no-signal test bal. acc | no-signal dir. AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            signal = run(name, True, Path(tmp) / "signal", args.max_epochs)
            canary = run(name, False, Path(tmp) / "nosignal", args.max_epochs)
            if "error" in signal or "error" in canary:
                line = f"| {name} | failed: {signal.get('error') or canary.get('error')} | | | | | | | |"
            else:
                line = (f"| {name} | {signal['seconds']:.1f} | {signal['epochs']} | {signal['val']:.3f} | "
                        f"{signal['test']:.3f} | {_number(signal['auc'])} | {_number(signal['ic'])} | "
                        f"{canary['test']:.3f} | {_number(canary['auc'])} |")
            print(line, flush=True)
            lines.append(line)
    table = "\n".join(lines)
    if not args.no_docs:
        docs = REPO / "docs" / "models.md"
        text = docs.read_text()
        start, end = f"<!-- {args.table}:start -->", f"<!-- {args.table}:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            docs.write_text(f"{head}{start}\n{table}\n{end}{tail}")
            print(f"updated {docs}")
        else:
            print(f"docs/models.md has no {start} ... {end} markers; table printed only")


if __name__ == "__main__":
    main()
