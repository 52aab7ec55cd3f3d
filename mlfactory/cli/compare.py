"""``mlfactory compare``: a leaderboard of runs, printed and written as CSV and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_COLUMNS = [
    "model", "horizon", "data", "val_balanced_accuracy", "test_balanced_accuracy", "test_f1_macro",
    "test_log_loss", "test_ece", "test_sharpe", "test_ic_mean", "train_seconds", "run_dir",
]


def compare_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlfactory compare",
        description="Leaderboard of runs: model, horizon, data, val and test metrics, train time, run directory.",
    )
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("lightning_logs")],
                        help="run directories or folders of runs (default: lightning_logs)")
    parser.add_argument("--sort", default="test_balanced_accuracy",
                        help="column to sort by, best first (losses, ECE and drawdown sort ascending)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for leaderboard.csv and leaderboard.png (default: the first path)")
    parser.add_argument("--all", action="store_true", help="include failed and unfinished runs")
    parser.add_argument("--top", type=int, default=None, help="print only the best N runs")
    args = parser.parse_args(argv)

    import pandas as pd

    from mlfactory.evaluation.compare import leaderboard, leaderboard_figure
    from mlfactory.evaluation.plots import save

    table = leaderboard(args.paths, sort=args.sort, include_incomplete=args.all)
    output = args.output or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    output.mkdir(parents=True, exist_ok=True)
    table.to_csv(output / "leaderboard.csv", index=False)
    save(leaderboard_figure(table, args.sort), output / "leaderboard.png")

    columns = list(dict.fromkeys([c for c in DEFAULT_COLUMNS if c in table] + [args.sort]))
    if args.all:
        columns.insert(1, "status")
    shown = table[columns].head(args.top) if args.top else table[columns]
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        print(shown.to_string(index=False))
    print(f"\n{len(table)} runs; wrote {output / 'leaderboard.csv'} and {output / 'leaderboard.png'}")
    return 0
