"""mlfactory's performance benchmarks: each target measured against its physical limit, side by side.

Usage, from the project root::

    .venv/bin/python benchmarks/run.py                      # every benchmark (about 5 min on 2 shared cores)
    .venv/bin/python benchmarks/run.py --quick              # smaller and fewer repeats (about 3 min)
    .venv/bin/python benchmarks/run.py --only neural boosting
    .venv/bin/python benchmarks/run.py --threads 2          # threads per side (default 1, see below)
    .venv/bin/python benchmarks/run.py --no-docs            # print only

It prints one table of ratios with their targets and PASS/FAIL, and writes docs/performance.md: a
summary table and one section per benchmark (method, details, breakdowns and profiles). With
``--only``, the other benchmarks' sections are kept as they were and the summary is rebuilt from all
sections. Text outside the generated markers of docs/performance.md is left alone.

The benchmarks (one module each, ``benchmarks/bench_<name>.py``; the docstring of each says exactly
what is compared):

==========  ===========================================================================  =========
name        compares                                                                     target
==========  ===========================================================================  =========
memory      peak RSS added by building + iterating the training SequenceDataset,         <= 1.25 x
            against the split's 2-D float32 array
neural      lstm training samples/s via Trainer + FactoryDataModule, against a bare       >= 0.9 x
            PyTorch loop over the same model, tensors, batch size and threads
boosting    xgboost/lightgbm/catboost fit through mlfactory, against the library's own   <= 1.1 x
            fit on the same arrays and parameters; predictions must be identical
loading     TimeSeriesDataContainer reading the 3 splits, against pyarrow + numpy        <= 1.5 x
startup     ``mlfactory models`` and ``mlfactory --help`` wall time; no torch/Lightning   < 1.5 s
inference   ModelBundle.predict rows/s for xgboost and lstm, against the direct call     >= 0.8 x
==========  ===========================================================================  =========

Data: ``benchmarks/data.py`` builds (once, cached under ``~/.cache/mlfactory``) a split directory of
50,000 rows x 180 features per split from the project's generator: its 13 features, 12 lags of each,
and 11 seeded noise columns; seq_len 60, horizon 5.

How to read the numbers:

- Every figure is a ratio of two things measured in the same process, alternating, repeated; the
  table shows the median of the per-repeat ratios (the spread is in the details). Absolute times
  appear only as context, except the start-up target, which is absolute.
- Each side runs the same number of threads (``--threads``, default 1: torch, OpenMP, the boosting
  libraries' ``n_jobs`` and pyarrow). With one thread, times are the process's CPU time, which on a
  shared machine measures the work done and not the neighbours' load (on an idle machine it equals
  wall time); with more threads they are wall time. Wall-time ratios are always in the details.
- Each benchmark runs in a fresh child process (``python benchmarks/bench_<name>.py --out FILE``),
  so imports, allocator state and thread settings never leak from one to the next. A module can be
  run on its own the same way; without ``--out`` it prints its rows.
- Nothing here is a test: the suite never times anything (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCS = REPO / "docs" / "performance.md"

# name -> (section title, target as the issue states it)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "memory": ("1. Window memory", "peak memory added by building and iterating the training sequence dataset "
               "<= 1.25 x the split's 2-D float32 array"),
    "neural": ("2. Neural throughput", "lstm training samples/s through mlfactory >= 0.9 x a bare PyTorch loop"),
    "boosting": ("3. Non-gradient overhead", "fit through mlfactory <= 1.1 x the library's own fit, identical "
                 "predictions"),
    "loading": ("4. Data loading", "the container reads the three splits in <= 1.5 x pyarrow's time into numpy"),
    "startup": ("5. Start-up", "`mlfactory models` and `mlfactory --help` answer in < 1.5 s without torch or "
                "Lightning"),
    "inference": ("6. Inference", "bundle prediction rows/s >= 0.8 x the library or module called directly"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (about 3 minutes)")
    parser.add_argument("--threads", type=int, default=1, help="threads per side in every benchmark (default 1)")
    parser.add_argument("--no-docs", action="store_true", help="print the table only; leave docs/performance.md alone")
    args = parser.parse_args()

    names = args.only or list(BENCHMARKS)
    context = _context(args)
    print(f"mlfactory benchmarks ({'quick' if args.quick else 'full'}, {args.threads} thread(s) per side, "
          f"{context['cpus']} CPUs, load average {context['load_start']})", flush=True)
    results: dict[str, dict] = {}
    for name in names:
        started = time.perf_counter()
        results[name] = _run_child(name, args)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        _print_rows(name, results[name]["rows"], results[name]["seconds"])
    context["load_end"] = _load()
    print()
    print(_console_table([row for name in names for row in results[name]["rows"]]))
    if not args.no_docs:
        _write_docs(results, context)
        print(f"\nwrote {DOCS.relative_to(REPO)}")
    failed = [r for name in names for r in results[name]["rows"] if r["status"] in ("FAIL", "ERROR")]
    return 1 if failed else 0


# --- running ---------------------------------------------------------------------------------------


def _run_child(name: str, args: argparse.Namespace) -> dict:
    """Run ``bench_<name>.py`` in a fresh process; its report, or one ERROR row saying why there is none."""
    with tempfile.TemporaryDirectory(prefix="mlfactory-bench-") as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(HERE / f"bench_{name}.py"), "--threads", str(args.threads), "--out", str(out)]
        if args.quick:
            command.append("--quick")
        env = {**os.environ, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore")}
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        return {"rows": [{"benchmark": name, "metric": "(benchmark failed)", "value": None, "op": "", "limit": None,
                          "unit": "", "detail": f"exit {proc.returncode}: {tail}"[:400], "status": "ERROR"}],
                "notes": [f"The benchmark failed; its stderr ends with:\n\n```\n"
                          f"{chr(10).join(proc.stderr.strip().splitlines()[-15:])}\n```"]}


# --- formatting ------------------------------------------------------------------------------------


def _value(row: dict) -> str:
    if row["value"] is None:
        return "-"
    suffix = {"x": " x", "s": " s"}.get(row["unit"], "")
    value = row["value"]
    return f"{value:.3g}{suffix}" if abs(value) < 1000 else f"{value:,.0f}{suffix}"


def _target(row: dict) -> str:
    if row["limit"] is None:
        return ""
    suffix = {"x": " x", "s": " s"}.get(row["unit"], "")
    return f"{row['op']} {row['limit']:g}{suffix}"


def _print_rows(name: str, rows: list[dict], seconds: float) -> None:
    print(f"\n[{name}] {seconds:.0f} s", flush=True)
    for row in rows:
        print(f"  {row['status']:<12} {row['metric']}: {_value(row)} {_target(row)}")
        if row["detail"]:
            print(f"  {'':<12} {row['detail']}", flush=True)


def _console_table(rows: list[dict]) -> str:
    header = ("benchmark", "metric", "value", "target", "status")
    lines = [header] + [(r["benchmark"], r["metric"], _value(r), _target(r), r["status"]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _markdown_rows(rows: list[dict], detail: bool) -> list[str]:
    if detail:
        lines = ["| metric | value | target | status | details |", "|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {_value(r)} | {_target(r)} | {r['status']} | {r['detail']} |" for r in rows]
    else:
        lines = ["| benchmark | metric | value | target | status |", "|---|---|---|---|---|"]
        lines += [f"| {r['benchmark']} | {r['metric']} | {_value(r)} | {_target(r)} | {r['status']} |" for r in rows]
    return lines


# --- docs/performance.md ---------------------------------------------------------------------------


def _marker(name: str, end: bool = False) -> str:
    return f"<!-- bench:{name}:{'end' if end else 'start'} -->"


def _section(name: str, result: dict, context: dict) -> str:
    title, target = BENCHMARKS[name]
    module_doc = _module_doc(name)
    lines = [
        _marker(name),
        f"<!-- rows: {json.dumps(result['rows'])} -->",
        f"## {title}",
        "",
        f"Target: {target}.",
        "",
        f"*Measured {context['date']} by `python benchmarks/run.py{' --quick' if context['quick'] else ''}`, "
        f"{context['threads']} thread(s) per side, {context['machine']}, load average {context['load_start']} "
        f"at the start of the run; this benchmark took {result.get('seconds', 0):.0f} s.*",
        "",
        *_markdown_rows(result["rows"], detail=True),
        "",
    ]
    for note in result.get("notes", []):
        lines += [note, ""]
    lines += ["<details><summary>Method (benchmarks/bench_" + name + ".py)</summary>", "", module_doc, "",
              "</details>", _marker(name, end=True)]
    return "\n".join(lines)


def _module_doc(name: str) -> str:
    import ast

    tree = ast.parse((HERE / f"bench_{name}.py").read_text())
    return (ast.get_docstring(tree) or "").replace("``", "`")


def _write_docs(results: dict[str, dict], context: dict) -> None:
    text = DOCS.read_text() if DOCS.is_file() else _skeleton()
    for name, result in results.items():
        section = _section(name, result, context)
        start, end = _marker(name), _marker(name, end=True)
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + section + rest.split(end, 1)[1]
        else:
            text = text.replace(_marker("sections", end=True), section + "\n\n" + _marker("sections", end=True))
    rows = []
    for name in BENCHMARKS:  # every section in the file, re-run or not
        start = f"{_marker(name)}\n<!-- rows: "
        if start in text:
            rows += json.loads(text.split(start, 1)[1].split(" -->", 1)[0])
    summary = "\n".join([_marker("summary"), *_markdown_rows(rows, detail=False), _marker("summary", end=True)])
    head, rest = text.split(_marker("summary"), 1)
    text = head + summary + rest.split(_marker("summary", end=True), 1)[1]
    DOCS.write_text(text)


def _skeleton() -> str:
    return "\n".join([
        "# Performance",
        "",
        "Generated by `python benchmarks/run.py` (see its docstring for usage and method); text between the",
        "`<!-- bench:... -->` markers is rewritten on every run, text outside them is kept.",
        "",
        "## Summary",
        "",
        _marker("summary"),
        _marker("summary", end=True),
        "",
        _marker("sections"),
        _marker("sections", end=True),
        "",
    ])


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _context(args: argparse.Namespace) -> dict:
    versions = {}
    for module in ("torch", "lightning", "xgboost", "lightgbm", "catboost", "pyarrow", "numpy"):
        try:
            from importlib.metadata import version

            versions[module] = version({"xgboost": "xgboost-cpu"}.get(module, module))
        except Exception:
            try:
                versions[module] = version(module)
            except Exception:
                versions[module] = "?"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


if __name__ == "__main__":
    sys.exit(main())
