"""Benchmark 5, start-up: ``mlfactory models`` and ``mlfactory --help`` answer in under 1.5 s, without torch.

Method: the installed console script (``.venv/bin/mlfactory``, i.e. the ``mlfactory`` next to this
Python) runs as a subprocess, 5 times per command (3 with ``--quick``), the commands alternating; the
table shows the median wall time from start to exit. This target is absolute (seconds), the only
one that is. Beside it: the bare interpreter's start (``python -c pass``) as the floor, the child's
CPU time, and whether either command imported torch, Lightning or other heavy modules (checked in a
separate run that lists ``sys.modules`` after ``main()``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO, Report, Row, child_main, median, spread

TARGET_S = 1.5
COMMANDS = (("models",), ("--help",))
HEAVY = ("torch", "lightning", "torchmetrics", "jsonargparse", "pandas", "pyarrow", "numpy", "scipy", "sklearn")


def _script() -> str:
    candidate = Path(sys.executable).with_name("mlfactory")
    if not candidate.is_file():
        raise RuntimeError(f"{candidate} is missing; install the project (pip install -e .) into this environment")
    return str(candidate)


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _heavy_imports(args: tuple[str, ...]) -> list[str]:
    code = (
        "import json, sys, contextlib, io\n"
        "from mlfactory.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): main({list(args)!r})\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool, threads: int) -> Report:
    script = _script()
    repeats = 3 if quick else 5
    for args in COMMANDS:  # warm-up: bytecode and file caches
        _timed([script, *args])
    times = {args: [] for args in COMMANDS}
    floor = []
    for _ in range(repeats):
        for args in COMMANDS:
            times[args].append(_timed([script, *args]))
        floor.append(_timed([sys.executable, "-c", "pass"]))
    report = Report()
    floor_wall = median([w for w, _ in floor])
    for args in COMMANDS:
        wall = [w for w, _ in times[args]]
        cpu = [c for _, c in times[args]]
        heavy = _heavy_imports(args)
        forbidden = [m for m in heavy if m in ("torch", "lightning")]
        report.rows.append(Row(
            "startup", f"`mlfactory {' '.join(args)}` wall time, s", median(wall), "<", TARGET_S, unit="s",
            detail=f"{spread(wall)}; child CPU {median(cpu):.2f} s; heavy modules imported: {heavy or 'none'}",
        ))
        report.rows.append(Row(
            "startup", f"`mlfactory {' '.join(args)}` imports torch or Lightning", float(len(forbidden)), "<=", 0.0,
            unit="", detail=", ".join(forbidden) or "neither",
        ))
    report.notes.append(
        f"**Start-up.** The bare interpreter starts in {floor_wall:.2f} s (median of {repeats}); the commands' "
        "wall times above include it."
    )
    return report


if __name__ == "__main__":
    child_main(run)
