"""Benchmark: ``prepare`` on one million 1-minute bars of one symbol, or on many symbols (ten million bars).

Generates the bars with ``mlfactory.data.synthetic.generate_bars`` one symbol at a time and writes them
to a parquet (or CSV) file, or, for several symbols, to a directory of one parquet file per symbol (the
generation never holds more than one symbol). Then runs ``prepare_splits`` on that input in a fresh child
process, so the reported peak memory (the child's maximum resident set size) belongs to ``prepare``
alone, imports included. ``--stage load`` runs only the reading and checking of the bars
(``load_bars``), to show its share of the peak.

    .venv/bin/python benchmarks/prepare_1m.py             # 1,000,000 bars, parquet input
    .venv/bin/python benchmarks/prepare_1m.py --csv       # the same bars from a CSV file
    .venv/bin/python benchmarks/prepare_1m.py --bars 200000
    # ten million bars: 7 symbols x 1.43 million, under the machine's big-memory lock and a 12 GiB cap
    flock /tmp/lead/bigmem.lock nice -n 10 .venv/bin/python benchmarks/prepare_1m.py \\
        --symbols 7 --bars 1430000 --cap-gib 12
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S_PER_MILLION = 120.0  # goal: under 2 minutes per million bars on 2 cores


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


def child(input_path: str, output: str, stage: str, cap_gib: float) -> None:
    """Run prepare (or only ``load_bars``) once and print timings and peak memory as JSON (in the child)."""
    if cap_gib:
        import resource

        cap = int(cap_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    start = time.perf_counter()
    from mlfactory.prepare.bars import load_bars
    from mlfactory.prepare.pipeline import prepare_splits

    imported = time.perf_counter()
    rss_before = peak_rss_mib()
    report: dict = {}
    if stage == "load":
        bars = load_bars(input_path)
        report["bars"] = len(bars)
    else:
        prepare_splits(input_path, output, horizons=(5, 10, 20))
        meta = json.loads((Path(output) / "scaling_metadata.json").read_text())
        report |= {"rows": meta["rows"], "n_features": len(meta["features"]),
                   "output_mib": sum(p.stat().st_size for p in Path(output).iterdir()) / 2**20}
    done = time.perf_counter()
    print(json.dumps({**report, "import_s": imported - start, "prepare_s": done - imported,
                      "peak_rss_mib": peak_rss_mib(), "rss_after_import_mib": rss_before}))


def write_input(directory: Path, n_bars: int, n_symbols: int, csv: bool) -> Path:
    """The benchmark's bars: one file for one symbol, else a directory of one parquet file per symbol."""
    from mlfactory.data.synthetic import generate_bars

    if n_symbols == 1:
        path = directory / ("bars.csv" if csv else "bars.parquet")
        bars = generate_bars(n_bars=n_bars, symbols=["BENCH"], seed=0)
        bars.to_csv(path, index=False) if csv else bars.to_parquet(path, index=False)
        return path
    if csv:
        raise SystemExit("--csv is for one symbol; several symbols are written as parquet files")
    path = directory / "bars"
    path.mkdir()
    for i in range(n_symbols):
        # seed i: each symbol its own series; the start times coincide, as for instruments of one market
        generate_bars(n_bars=n_bars, symbols=[f"BENCH{i}"], seed=i).to_parquet(path / f"BENCH{i}.parquet",
                                                                                index=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="1-minute bars per symbol (default 1,000,000)")
    parser.add_argument("--symbols", type=int, default=1, help="number of symbols (default 1)")
    parser.add_argument("--csv", action="store_true", help="read the bars from CSV instead of parquet (one symbol)")
    parser.add_argument("--stage", choices=("prepare", "load"), default="prepare",
                        help="'load': only read and check the bars (load_bars), to see their share of the peak")
    parser.add_argument("--cap-gib", type=float, default=0.0,
                        help="cap the child's address space (RLIMIT_AS) at this many GiB; 0: no cap")
    parser.add_argument("--child", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.stage, args.cap_gib)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = write_input(Path(tmp), args.bars, args.symbols, args.csv)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(path), str(Path(tmp) / "splits"), "--stage", args.stage,
             "--cap-gib", str(args.cap_gib)],
            capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return result.returncode
    report = json.loads(result.stdout.strip().splitlines()[-1])
    total = args.bars * args.symbols
    goal = GOAL_S_PER_MILLION * total / 1e6
    print(f"bars:            {total:,} = {args.symbols} symbol(s) x {args.bars:,} "
          f"({'CSV' if args.csv else 'parquet'} input, generated in {generated:.0f} s), horizons 5 10 20")
    if args.stage == "load":
        print(f"load_bars:       {report['prepare_s']:.1f} s for {report['bars']:,} bars")
    else:
        print(f"features:        {report['n_features']}")
        print(f"rows written:    {report['rows']} ({report['output_mib']:.0f} MiB)")
        print(f"prepare:         {report['prepare_s']:.1f} s (imports {report['import_s']:.1f} s; "
              f"process wall {wall:.1f} s; goal {goal:.0f} s)")
    print(f"peak memory:     {report['peak_rss_mib']:.0f} MiB resident "
          f"({report['rss_after_import_mib']:.0f} MiB after imports)")
    return 0 if args.stage == "load" or report["prepare_s"] < goal else 1


if __name__ == "__main__":
    sys.exit(main())
