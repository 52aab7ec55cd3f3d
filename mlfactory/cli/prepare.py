"""``mlfactory prepare``: build a leakage-safe split directory from raw OHLCV bars (docs/data.md)."""

from __future__ import annotations

import argparse
import json

from mlfactory.prepare.timeframes import TIMEFRAMES

EXAMPLE = """\
example:
  mlfactory prepare --input bars.csv --output data/splits/scaled --horizons 5 10 20
  mlfactory fit --model xgboost --data.data_dir data/splits/scaled --data.horizon 20
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlfactory prepare",
        description="Build {train,val,test}_scaled.parquet and scaling_metadata.json from raw OHLCV bars: "
        "multi-timeframe TA-Lib features, triple-barrier labels, sample weights, purge and embargo, "
        "a scaler fitted on train only.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, metavar="PATH",
                        help="a CSV or parquet file of bars, or a directory of them (one or many symbols)")
    parser.add_argument("--output", required=True, metavar="DIR", help="the split directory to write")
    parser.add_argument("--horizons", type=int, nargs="+", default=[5, 20], metavar="H",
                        help="label horizons in base bars (default: 5 20)")
    parser.add_argument("--timeframes", nargs="+", metavar="TF",
                        help=f"feature timeframes (default: those of {' '.join(TIMEFRAMES)} at or above the "
                        "base resolution); the base resolution is always included")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                       help="chronological split fractions (default: 0.7 0.15 0.15)")
    split.add_argument("--dates", nargs=2, metavar=("VAL_START", "TEST_START"),
                       help="split at these timestamps instead (UTC when no offset is given)")
    parser.add_argument("--embargo", type=int, metavar="BARS",
                        help="bars dropped at the start of val and test, per symbol (default: the longest horizon)")
    parser.add_argument("--scaler", default="robust", choices=["robust", "standard", "minmax", "none"],
                        help="scaler fitted on train only (default: robust)")
    parser.add_argument("--barrier_k", type=float, default=1.0, metavar="K",
                        help="barrier width in units of vol * sqrt(H) (default: 1.0)")
    parser.add_argument("--vol_window", type=int, default=100, metavar="BARS",
                        help="bars in the barrier volatility (default: 100)")
    parser.add_argument("--fill_gaps", type=int, default=5, metavar="BARS",
                        help="fill gaps of at most this many missing bars with flat bars while the market is open "
                        "(calendar inferred from the bars: weekends, nights and holidays are never filled); 0: none "
                        "(default: 5)")
    parser.add_argument("--max_drop_share", type=float, default=0.01, metavar="SHARE",
                        help="refuse when non-finite features or missing labels would drop more than this share of "
                        "a symbol's rows after the warm-up (default: 0.01)")
    parser.add_argument("--return_attribution", action="store_true",
                        help="multiply the uniqueness weights by the absolute return attribution")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def prepare_command(argv: list[str]) -> int:
    """Run ``mlfactory prepare`` with ``argv`` (the arguments after ``prepare``); returns the exit code."""
    args = _parser().parse_args(argv)
    from mlfactory.prepare import OutputExistsError
    from mlfactory.prepare.pipeline import METADATA_FILE, prepare_splits

    try:
        out = prepare_splits(
            args.input,
            args.output,
            horizons=args.horizons,
            timeframes=args.timeframes,
            fractions=args.fractions,
            dates=args.dates,
            embargo=args.embargo,
            scaler=args.scaler,
            barrier_k=args.barrier_k,
            vol_window=args.vol_window,
            fill_gaps=args.fill_gaps,
            return_attribution=args.return_attribution,
            max_drop_share=args.max_drop_share,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except OutputExistsError as err:
        raise err.naming("--overwrite") from None  # the flag this user types, not the Python keyword
    meta = json.loads((out / METADATA_FILE).read_text())
    rows = ", ".join(f"{split} {n:,}" for split, n in meta["rows"].items())
    print(f"wrote {out}: {len(meta['features'])} features on {', '.join(meta['timeframes'])}; rows {rows}")
    for split, (first, last) in meta["split_boundaries"].items():
        print(f"  {split:<5} {first} .. {last}")
    horizon = max(meta["horizons"])
    print(f"train with: mlfactory fit --model xgboost --data.data_dir {out} --data.horizon {horizon}")
    return 0
