"""What every benchmark module shares: result rows, the child-process protocol, timers and memory probes.

Each ``bench_<name>.py`` defines ``run(quick: bool, threads: int) -> Report`` and ends with
``child_main(run)``; ``benchmarks/run.py`` starts it as ``python benchmarks/bench_<name>.py --out FILE``
in a fresh process (so imports, memory peaks and thread settings of one benchmark never leak into
another) and reads the JSON it writes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))


@dataclass
class Row:
    """One line of the ratio table.

    ``value`` is the measured ratio (or seconds for an absolute target); ``limit`` and ``op`` (``<=``,
    ``>=`` or ``<``) make the target; ``status`` is PASS, FAIL, INFO (no target) or NOT MEASURED.
    """

    benchmark: str
    metric: str
    value: float | None
    op: str = ""
    limit: float | None = None
    unit: str = "x"
    detail: str = ""
    status: str = ""

    def __post_init__(self) -> None:
        if self.status:
            return
        if self.value is None:
            self.status = "NOT MEASURED"
        elif self.limit is None:
            self.status = "INFO"
        else:
            ok = {"<=": self.value <= self.limit, ">=": self.value >= self.limit, "<": self.value < self.limit}[self.op]
            self.status = "PASS" if ok else "FAIL"


@dataclass
class Report:
    """What one benchmark hands back: its rows, and markdown notes (method, breakdowns, profiles)."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float], digits: int = 3) -> str:
    """``median [min..max] (n=...)`` for a detail column."""
    return f"median {median(values):.{digits}f} [{min(values):.{digits}f}..{max(values):.{digits}f}] (n={len(values)})"


@dataclass(frozen=True)
class Stamp:
    """A moment (or a duration) on two clocks: wall time and this process's CPU time (all threads).

    The machine's cores are shared with other people's jobs, so wall time of one side can grow by
    half when a neighbour starts. With one thread per side, the process's CPU time is the work it
    did and barely moves with the load; on an idle machine it equals the wall time. ``judged`` picks
    CPU time when the benchmark runs one thread, wall time otherwise (CPU time then sums threads).
    """

    wall: float
    cpu: float

    def __sub__(self, other: "Stamp") -> "Stamp":
        return Stamp(self.wall - other.wall, self.cpu - other.cpu)

    def __add__(self, other: "Stamp") -> "Stamp":
        return Stamp(self.wall + other.wall, self.cpu + other.cpu)

    def judged(self, threads: int) -> float:
        return self.cpu if threads == 1 else self.wall


def now() -> Stamp:
    return Stamp(time.perf_counter(), time.process_time())


def clock_name(threads: int) -> str:
    return "process CPU time" if threads == 1 else "wall time"


def proc_status_kib(key: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    hwm, rss = proc_status_kib("VmHWM"), proc_status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 64


def set_threads(threads: int) -> None:
    """The same intra-op thread count for every library of a benchmark (torch, OpenMP, BLAS)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def child_main(run: Callable[[bool, int], Report]) -> None:
    """Command line of a benchmark module: run it and write its report as JSON (or print it)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the report here as JSON (default: print it)")
    args = parser.parse_args()
    set_threads(args.threads)
    report = run(args.quick, args.threads)
    payload = {"rows": [asdict(r) for r in report.rows], "notes": report.notes}
    if args.out:
        args.out.write_text(json.dumps(payload, indent=2))
    else:
        for r in report.rows:
            print(f"{r.benchmark:10s} {r.metric:55s} {r.value!s:>10} {r.op}{r.limit} {r.status}  {r.detail}")
        print("\n".join(report.notes))
