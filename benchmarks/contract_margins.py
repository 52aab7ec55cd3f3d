"""How far each registered model's contract verdicts sit from their thresholds, over several seeds.

The contract suite (tests/models/test_contract.py) asserts, per model, that it beats chance on the
planted-signal data and stays at chance on the no-signal twin. Float paths differ between CPUs
(AVX2 against AVX-512, another BLAS kernel), so a verdict that sits at its threshold flips on another
machine. This script fits every model exactly as the suite does, with several seeds, and reports the
worst margin to each threshold in units of the threshold's own band. Seeds stand in for other
machines: they move initial weights, shuffling and bagging, which is a larger perturbation than a
different rounding order. ``ATEN_CPU_CAPABILITY=default`` (or ``avx2``) in the environment also
moves torch's kernels to another instruction set.

Usage:
    python benchmarks/contract_margins.py --seeds 0 1 2 3 4 [--models resnet1d lstm] [--out margins.json]

Writes a markdown table to stdout and, with ``--out``, the raw scores as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _contract_module():
    spec = importlib.util.spec_from_file_location("contract", ROOT / "tests" / "models" / "test_contract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="also keep each fit's test predictions here (<model>-<signal|nosignal>-<seed>.npz), "
                             "to compare two versions of the code model by model")
    parser.add_argument("--table-from", type=Path, nargs="*", default=None,
                        help="only print the table of earlier --out files (merged), fitting nothing")
    parser.add_argument("--signal-strength", type=float, default=None,
                        help="drift of the planted-signal data (default: the suite's CONTRACT_SIGNAL_STRENGTH)")
    args = parser.parse_args()

    if args.table_from:
        merged: dict[str, list[dict]] = {}
        for path in args.table_from:
            merged.update(json.loads(path.read_text()))
        print_table(merged, _contract_module())
        return
    import torch

    from conftest import CONTRACT_BARS, CONTRACT_SIGNAL_STRENGTH, TEST_PREPARE, quiet_trainer
    from mlfactory.data.synthetic import make_sample_splits

    torch.set_num_threads(1)
    contract = _contract_module()
    strength = CONTRACT_SIGNAL_STRENGTH if args.signal_strength is None else args.signal_strength
    names = args.models or contract.NAMES
    scores: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dirs = {
            signal: make_sample_splits(root / f"data-{signal}", signal=signal, n_bars=CONTRACT_BARS,
                                       signal_strength=strength, **TEST_PREPARE)
            for signal in (True, False)
        }
        for name in names:
            scores[name] = []
            for seed in args.seeds:
                row: dict = {"seed": seed}
                started = time.perf_counter()
                for signal, data_dir in dirs.items():
                    run_root = root / f"{name}-{seed}-{signal}"

                    def make_trainer(max_epochs: int = 2, name: str = "run", **kwargs):
                        return quiet_trainer(run_root, name, max_epochs, **kwargs)

                    _, _, trainer = contract.fit_once(name, data_dir, run_root, make_trainer, seed=seed)
                    test = json.loads((Path(trainer.log_dir) / "metrics" / "evaluation_metrics.json").read_text())["test"]
                    key = "signal" if signal else "nosignal"
                    if args.predictions:
                        args.predictions.mkdir(parents=True, exist_ok=True)
                        shutil.copy(Path(trainer.log_dir) / "predictions" / "test_predictions.npz",
                                    args.predictions / f"{name}-{key}-{seed}.npz")
                    row[f"{key}_bal_acc"] = test["balanced_accuracy"]
                    row[f"{key}_band"] = contract.chance_band(test["n_samples"], contract.HORIZON)
                    if not signal:
                        row["nosignal_auc"] = test["direction_auc"]
                        row["nosignal_auc_band"] = contract.direction_band(test, contract.HORIZON)
                row["seconds"] = round(time.perf_counter() - started, 1)
                scores[name].append(row)
                print(f"{name} seed {seed}: {row}", file=sys.stderr, flush=True)
                if args.out:  # after every fit, so a long measurement that dies keeps what it measured
                    args.out.write_text(json.dumps(scores, indent=2))

    print_table(scores, contract)

def print_table(scores: dict[str, list[dict]], contract) -> None:
    """Markdown: per model, the scores' range over seeds and the worst margin to each threshold, in bands."""
    print("| model | signal bal. acc. (min-max) | pass mark | worst margin (bands) | no-signal bal. acc. (max dev.) "
          "| worst canary margin (bands) | no-signal dir. AUC (max dev.) | worst AUC margin (bands) | s/seed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in sorted(scores.items()):
        signal = [r["signal_bal_acc"] for r in rows]
        band = rows[0]["signal_band"]
        mark = 1 / 3 + contract.PASS_FRACTION * band
        learn_margin = (min(signal) - mark) / band
        dev = max(abs(r["nosignal_bal_acc"] - 1 / 3) for r in rows)
        canary_margin = min((r["nosignal_band"] - abs(r["nosignal_bal_acc"] - 1 / 3)) / r["nosignal_band"] for r in rows)
        auc_dev = max(abs(r["nosignal_auc"] - 0.5) for r in rows)
        auc_margin = min((r["nosignal_auc_band"] - abs(r["nosignal_auc"] - 0.5)) / r["nosignal_auc_band"] for r in rows)
        seconds = sum(r["seconds"] for r in rows) / len(rows)
        print(f"| {name} | {min(signal):.3f}-{max(signal):.3f} | {mark:.3f} | {learn_margin:+.2f} | {dev:.3f} "
              f"| {canary_margin:+.2f} | {auc_dev:.3f} | {auc_margin:+.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
