"""``mlfactory predict --bundle``: batch inference of a run's bundle on raw bars or a file of unscaled features;
``mlfactory sign --bundle``: sign a bundle you trust with the bundle key."""

from __future__ import annotations

import argparse
import sys

EXAMPLE = """\
example:
  mlfactory predict --bundle lightning_logs/xgboost/<run_id>/bundle --input features.parquet --output preds.parquet

  mlfactory predict --bundle lightning_logs/xgboost/<run_id>/bundle --input new_bars.csv --output preds.parquet

The input is either raw OHLCV bars (datetime, open, high, low, close, volume, optional symbol: the formats
prepare reads), from which the bundle computes the features with prepare's recipe (one prediction per bar;
bars without enough history before them have has_history false), or a table holding every feature column
named in bundle.json (unscaled; extra columns are ignored), plus `datetime` (required for sequence models)
and `symbol` (when there are several series). See docs/inference.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlfactory predict --bundle",
        description="Predict class probabilities, class and confidence for every bar of a raw OHLCV file, or every "
        "row of a feature table (streamed in chunks), with a run's inference bundle.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, metavar="DIR", help="a run's bundle/ directory (or the run directory)")
    parser.add_argument("--input", required=True, metavar="FILE", help="parquet (.parquet, .pq) or CSV (.csv, .csv.gz, .txt)")
    parser.add_argument("--output", required=True, metavar="FILE", help="the parquet file to write")
    parser.add_argument("--chunk_rows", type=int, default=65_536, metavar="N",
                        help="input rows per chunk; memory grows with this, not with the file (default: 65536)")
    parser.add_argument("--batch_size", type=int, default=2048, metavar="N",
                        help="rows or windows per model call (default: 2048)")
    parser.add_argument("--device", default="cpu", help="torch device for neural models: cpu, cuda, cuda:N, mps (default: cpu)")
    parser.add_argument("--require-signature", "--require_signature", dest="require_signature", action="store_true",
                        help="refuse a bundle that is not signed with the key in MLFACTORY_BUNDLE_KEY or the file "
                        "MLFACTORY_BUNDLE_KEY_FILE names (a signed bundle that does not verify is always refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def bundle_predict_command(argv: list[str]) -> int:
    """Run ``mlfactory predict --bundle ...`` with ``argv`` (the arguments after ``predict``); returns the exit code."""
    if any(a in ("-h", "--help") for a in argv):  # `predict --bundle --help`: help, not "--bundle expects a value"
        _parser().print_help()
        return 0
    args = _parser().parse_args(argv)
    from mlfactory.inference.bundle import ModelBundle
    from mlfactory.inference.stream import predict_file

    bundle = ModelBundle.load(args.bundle, device=args.device, require_signature=args.require_signature)
    from mlfactory.inference.stream import looks_like_bars, predict_bars_file

    if looks_like_bars(args.input, bundle.features):  # raw OHLCV bars: prepare's recipe makes the features
        rows = predict_bars_file(bundle, args.input, args.output, batch_size=args.batch_size, overwrite=args.overwrite)
        print(f"wrote {rows:,} predictions of {bundle.model_name} from raw bars to {args.output}", file=sys.stderr)
        return 0
    rows = predict_file(
        bundle,
        args.input,
        args.output,
        chunk_rows=args.chunk_rows,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"wrote {rows:,} predictions of {bundle.model_name} to {args.output}", file=sys.stderr)
    return 0


def bundle_sign_command(argv: list[str]) -> int:
    """Run ``mlfactory sign --bundle DIR``: verify the bundle's checksums and sign it with the configured key."""
    parser = argparse.ArgumentParser(
        prog="mlfactory sign",
        description="Sign an inference bundle you trust with the bundle key (MLFACTORY_BUNDLE_KEY, or the file "
        "MLFACTORY_BUNDLE_KEY_FILE names), after checking every file against its manifest. Bundles written while "
        "a key is set are signed already. See docs/inference.md.",
    )
    parser.add_argument("--bundle", required=True, metavar="DIR", help="a run's bundle/ directory (or the run directory)")
    args = parser.parse_args(argv)
    from mlfactory.inference.bundle import sign_bundle
    from mlfactory.inference.signing import key_id, signing_key

    key = signing_key()
    directory = sign_bundle(args.bundle, key)  # refuses when no key is configured
    print(f"signed {directory} with key id {key_id(key)}", file=sys.stderr)
    return 0
