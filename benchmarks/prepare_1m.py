"""Benchmark: ``prepare`` on one million 1-minute bars of one symbol (goal: under 2 minutes on 2 cores).

Generates the bars with ``mlfactory.data.synthetic.generate_bars``, writes them to a parquet (or CSV)
file, then runs ``prepare_splits`` on that file in a fresh child process, so the reported peak memory
(the child's maximum resident set size) belongs to ``prepare`` alone, imports included.

    .venv/bin/python benchmarks/prepare_1m.py             # 1,000,000 bars, parquet input
    .venv/bin/python benchmarks/prepare_1m.py --csv       # the same bars from a CSV file
    .venv/bin/python benchmarks/prepare_1m.py --bars 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 120.0


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to this program alone; ru_maxrss
    would also count the parent's peak, which survives fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(input_path: str, output: str) -> None:
    """Run prepare once and print timings and peak memory as JSON (in the child process)."""
    start = time.perf_counter()
    from mlfactory.prepare.pipeline import prepare_splits

    imported = time.perf_counter()
    rss_before = peak_rss_mib()
    prepare_splits(input_path, output, horizons=(5, 10, 20))
    done = time.perf_counter()
    meta = json.loads((Path(output) / "scaling_metadata.json").read_text())
    print(json.dumps({
        "import_s": imported - start,
        "prepare_s": done - imported,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_import_mib": rss_before,
        "rows": meta["rows"],
        "n_features": len(meta["features"]),
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="number of 1-minute bars (default 1,000,000)")
    parser.add_argument("--csv", action="store_true", help="read the bars from CSV instead of parquet")
    parser.add_argument("--child", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from mlfactory.data.synthetic import generate_bars

    with tempfile.TemporaryDirectory() as tmp:
        bars = generate_bars(n_bars=args.bars, symbols=["BENCH"], seed=0)
        path = Path(tmp) / ("bars.csv" if args.csv else "bars.parquet")
        if args.csv:
            bars.to_csv(path, index=False)
        else:
            bars.to_parquet(path, index=False)
        del bars
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(path), str(Path(tmp) / "splits")],
            check=True, capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"bars:            {args.bars:,} x 1 symbol ({'CSV' if args.csv else 'parquet'} input), horizons 5 10 20")
    print(f"features:        {report['n_features']}")
    print(f"rows written:    {report['rows']}")
    print(f"prepare:         {report['prepare_s']:.1f} s (imports {report['import_s']:.1f} s; "
          f"process wall {wall:.1f} s; goal {GOAL_S:.0f} s)")
    print(f"peak memory:     {report['peak_rss_mib']:.0f} MiB resident "
          f"({report['rss_after_import_mib']:.0f} MiB after imports)")
    return 0 if report["prepare_s"] < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
