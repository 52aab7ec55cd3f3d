"""``mlfactory compare``: a leaderboard of runs, printed and written as CSV and PNG."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from typing import Callable

from mlfactory.errors import ConfigError, RunError

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
    parser.add_argument("--all", action="store_true",
                        help="include failed, running, dead (process gone) and broken (unreadable record) runs")
    parser.add_argument("--top", type=int, default=None, help="print only the best N runs")
    args = parser.parse_args(argv)

    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top {args.top}: pass a positive number of runs to print, or leave it out for all")

    import pandas as pd

    from mlfactory.evaluation.compare import leaderboard, leaderboard_figure
    from mlfactory.evaluation.plots import _pyplot

    table = leaderboard(args.paths, sort=args.sort, include_incomplete=args.all)
    output = args.output or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; pass a folder for leaderboard.csv and leaderboard.png")
    csv_path, png_path = output / "leaderboard.csv", output / "leaderboard.png"
    _write(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    figure = leaderboard_figure(table, args.sort)
    try:
        _write(png_path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    finally:
        _pyplot().close(figure)

    columns = list(dict.fromkeys([c for c in DEFAULT_COLUMNS if c in table] + [args.sort]))
    if "n_splits" in table:  # cross-validations: their test scores are means over splits, beside their spread
        at = columns.index("test_balanced_accuracy") + 1 if "test_balanced_accuracy" in columns else len(columns)
        columns[at:at] = ["test_balanced_accuracy_std", "n_splits"]
        columns.insert(1, "stage")
    if args.all:
        columns[1:1] = ["status", "problem"]
    shown = table[columns].head(args.top) if args.top else table[columns]
    if args.all:
        shown = shown.assign(problem=shown["problem"].map(_short))
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        print(shown.to_string(index=False))
    print(f"\n{len(table)} runs; wrote {csv_path} and {png_path}")
    return 0


def _write(path: Path, writer: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file, so a failed write (a full disk) leaves no half file."""
    from mlfactory.atomic import replacing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            writer(tmp)
    except OSError as err:
        reason = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or str(err)
        raise RunError(f"cannot write {path}: {reason}; free space or pass --output with another folder") from None


def _short(problem: object, width: int = 60) -> str:
    """A problem on one line, cut to ``width`` characters for the printed table (the CSV keeps it all)."""
    if not isinstance(problem, str) or not problem:
        return ""
    line = problem.splitlines()[0]
    return line if len(line) <= width else line[: width - 3] + "..."
