"""``mlfactory compare``: a leaderboard of runs, printed and written as CSV and PNG."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from typing import Callable

from mlfactory.errors import ConfigError, RunError

def compare_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlfactory compare",
        description="Leaderboard of runs: model, stage, differing hyper-parameters, val and test metrics with "
                    "95% block-bootstrap intervals, train time, run directory (docs/metrics.md).",
    )
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("lightning_logs")],
                        help="run directories or folders of runs (default: lightning_logs)")
    parser.add_argument("--sort", default="test_balanced_accuracy",
                        help="column to sort by, best first (losses, ECE and drawdown sort ascending)")
    parser.add_argument("--output", type=Path, default=Path("."),
                        help="folder for leaderboard.csv and leaderboard.png (default: the current directory)")
    parser.add_argument("--all", action="store_true",
                        help="include failed, running, dead (process gone) and broken (unreadable record) runs")
    parser.add_argument("--top", type=int, default=None, help="print only the best N runs")
    args = parser.parse_args(argv)

    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top {args.top}: pass a positive number of runs to print, or leave it out for all")
    if args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"--output {args.output} is a file; pass a folder for leaderboard.csv and leaderboard.png")

    import pandas as pd

    from mlfactory.evaluation.compare import compare_runs, leaderboard_figure
    from mlfactory.evaluation.plots import _pyplot

    table, shown = compare_runs(args.paths, sort=args.sort, include_incomplete=args.all, top=args.top)
    csv_path, png_path = args.output / "leaderboard.csv", args.output / "leaderboard.png"
    _write(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    figure = leaderboard_figure(table, args.sort)
    try:
        _write(png_path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    finally:
        _pyplot().close(figure)

    if args.all:
        shown = shown.assign(problem=shown["problem"].map(_short))
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.float_format", "{:.4f}".format):
        print(shown.to_string(index=False))
    count = f"{len(shown)} of {len(table)} runs" if len(shown) < len(table) else f"{len(table)} runs"
    print(f"\n{count}; wrote {csv_path} and {png_path}")
    if "noise" in shown and shown["noise"].eq("within noise").any():
        print(f"'within noise': the run's 95% interval of {args.sort} overlaps the leader's (docs/metrics.md)")
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
