"""Ten million rows: loading, boosting fits and one lstm epoch on 10M rows x 180 float32 features, side by side.

The data: ``benchmarks/data.py``'s ``tiled_split_dir``, the 50,000-row benchmark splits tiled to 70 %
/ 15 % / 15 % of ``--rows`` (10,000,000: train 7,000,000, val 1,500,000, test 1,500,000; 7.2 GB of
features; ~11 GB of parquet on disk, built once under the benchmark cache). Every copy of a split is
a series of its own (``<symbol>-t<i>``), so windows never cross copies. The rows repeat: the models'
scores on it mean nothing; this measures memory and time.

The measurements, one after another, each in a fresh process under ``RLIMIT_AS`` (``--mem-gib``), a
resident-memory guard (``--rss-gib``: killed past it) and a timeout (``--timeout``), niced; with ``--lock FILE`` each one takes that ``flock`` first and drops it
when its process ends (so others' big jobs can run between them; waiting for it is not timed):

- ``read``: ``pyarrow.parquet.read_table`` of train, val and test in turn (threads on, as users call
  it), each table (every column) dropped before the next: seconds (summed over the splits) and peak
  RSS (the largest split's: train). The baseline of "loading"; the container, which holds all three
  splits' features, is held to it;
- ``container``: ``TimeSeriesDataContainer.from_parquet_dir(D, horizon=5)``: seconds, peak RSS, and
  RSS held afterwards;
- ``xgboost``, ``lightgbm``: ``mlfactory fit --model M --data.data_dir D --model.n_estimators N
  --data.threads 2`` (``--rounds``, 10 by default; no permutation importance or figures, the run
  written under a scratch folder that is deleted): peak RSS of the whole process, wall and CPU seconds,
  the run's ``train_seconds``, and seconds per round (from the library's round bar: the elapsed time
  from the first round's end to the last's, over the rounds between);
- ``lstm``: ``mlfactory fit --model lstm --trainer.max_epochs 1 --trainer.limit_train_batches K
  --trainer.limit_val_batches K --data.seq_len 60 --data.threads 2`` (``--lstm-batches``, 100 by
  default): peak RSS, the training samples/s the epoch bar shows (wall time), and the full epoch's
  time projected from it (train windows / samples/s). A full epoch of 7M windows would take hours
  here; the peak does not depend on K, because the windows are gathered per batch from the 2-D
  array (lazy windows): K batches or all of them hold the same arrays plus one or two batches.
  ``--lstm-batches 25 100`` runs it for each K, to show that. After the epoch the fit predicts the
  whole val and test splits for its run record (``record_seconds``), which at 10M rows takes longer
  than the epoch's K batches; ``--lstm-stop-at-epoch-end`` stops the process once the epoch and its K
  validation batches are done (the bar shows ``train_loss``), and the table says so.

Peak RSS is the kernel's high-water mark: the child's ``VmHWM`` for ``read`` and ``container``, and
``ru_maxrss`` from ``wait4`` for a fit (the ``mlfactory`` process and anything it waited for). Ratios
are to the feature bytes of all three splits (rows x features x 4), which every fit reads. Goals
(issue 19): boosting fit peak <= 2x, lstm epoch peak <= 1.3x, loading (time and peak) <= 1.5x pyarrow's
own read. Wall times depend on the machine's load: the load average before and after each
measurement is recorded, and figures taken on a shared machine are only as good as that.

    nice -n 10 .venv/bin/python benchmarks/rows_10m.py --rows 1000000                  # check at 1M rows
    .venv/bin/python benchmarks/rows_10m.py --lock /tmp/lead/bigmem.lock --out /tmp/lead/bench10m.json
    .venv/bin/python benchmarks/rows_10m.py --only read container --rows 1000000
    .venv/bin/python benchmarks/rows_10m.py --table /tmp/lead/bench10m.json              # the table again
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from data import HORIZON, SPLITS, cache_root, tiled_split_dir  # noqa: E402

MEASUREMENTS = ("read", "container", "xgboost", "lightgbm", "lstm")
GOALS = {"boosting": 2.0, "lstm": 1.3, "loading": 1.5}
SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}
LSTM_SEQ_LEN, LSTM_BATCH = 60, 256
LSTM_EPOCH_END = "train_loss="  # the epoch bar shows the epoch's train_loss once the epoch and its validation are done
GIB = 2**30


# --------------------------------------------------------------------------- in-process children


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def child_read(data_dir: Path) -> dict:
    """Each split through ``pq.read_table`` (threads on) in turn, each table dropped before the next: seconds and peaks.

    Holding all three tables (every column, ~1.6 x the feature bytes) does not fit this machine's cap
    at 10M rows, so each split is read on its own; ``peak_bytes`` is the largest split's peak (train).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    base, seconds, peaks, table_bytes = _status_kib("VmRSS") * 1024, {}, {}, {}
    for split in SPLITS:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        start = time.perf_counter()
        table = pq.read_table(data_dir / f"{split}_scaled.parquet")
        seconds[split] = time.perf_counter() - start
        peaks[split], table_bytes[split] = _status_kib("VmHWM") * 1024, table.nbytes
        del table
        pa.default_memory_pool().release_unused()
    return {"seconds": sum(seconds.values()), "seconds_per_split": seconds, "base_bytes": base,
            "peak_bytes": max(peaks.values()), "peak_bytes_per_split": peaks, "table_bytes": table_bytes}


def child_container(data_dir: Path) -> dict:
    """``TimeSeriesDataContainer.from_parquet_dir``: seconds, the process's peak, and what it holds afterwards."""
    from mlfactory.data.container import TimeSeriesDataContainer

    base = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    container = TimeSeriesDataContainer.from_parquet_dir(data_dir, horizon=HORIZON)
    seconds = time.perf_counter() - start
    gc.collect()
    return {"seconds": seconds, "base_bytes": base, "peak_bytes": _status_kib("VmHWM") * 1024,
            "held_bytes": _status_kib("VmRSS") * 1024,
            "array_bytes": sum(container.split(s).features.nbytes for s in SPLITS)}


CHILDREN = {"read": child_read, "container": child_container}


# --------------------------------------------------------------------------- running one measurement


@contextlib.contextmanager
def _locked(lock: Path | None) -> Iterator[float]:
    """Hold ``flock(lock)`` (exclusive) for the block; yields the seconds spent waiting for it."""
    if lock is None:
        yield 0.0
        return
    with open(lock, "a") as handle:
        start = time.perf_counter()
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - start
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_capped(command: list[str], cwd: Path, timeout: float, mem_gib: float, stop_at: str | None = None,
               rss_gib: float | None = None) -> dict:
    """``command`` in its own session under RLIMIT_AS and nice 10, killed after ``timeout``; exit, seconds, rusage.

    stdout and stderr go to ``cwd/stdout.txt`` and ``cwd/stderr.txt``. ``ru_maxrss`` from ``wait4``
    covers the process and every descendant it waited for. With ``stop_at``, the process is also
    killed once that text appears in its stdout (checked every second); ``stopped`` then says so. With
    ``rss_gib``, it is killed once its resident memory passes that (checked every 0.2 s; ``over_rss``).
    """
    limit = int(mem_gib * GIB)

    def prepare() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.nice(10)

    load_before = os.getloadavg()[0]
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, preexec_fn=prepare, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        stopped, over_rss, finished = threading.Event(), threading.Event(), threading.Event()

        def watch() -> None:
            ticks = 0
            while not finished.wait(0.2):
                ticks += 1
                if rss_gib and _rss_bytes(process.pid) > rss_gib * GIB:
                    over_rss.set()
                elif stop_at and ticks % 5 == 0 and stop_at in (cwd / "stdout.txt").read_text(errors="replace"):
                    stopped.set()
                else:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                return

        watcher = threading.Thread(target=watch, daemon=True)
        if stop_at or rss_gib:
            watcher.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            finished.set()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    rc = 0 if stopped.is_set() else None if killed.is_set() else process.returncode
    return {"rc": rc, "stopped": stopped.is_set(), "over_rss": over_rss.is_set(), "wall_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_bytes": usage.ru_maxrss * 1024,
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "stdout": (cwd / "stdout.txt").read_text(errors="replace"),
            "stderr": (cwd / "stderr.txt").read_text(errors="replace")}


def _failure(done: dict, timeout: float, mem_gib: float, rss_gib: float | None) -> str:
    if done["over_rss"]:
        return f"stopped: resident memory passed {rss_gib:g} GiB"
    if done["rc"] is None:
        return f"timed out after {timeout:.0f} s"
    text = done["stderr"].lower()
    if any(s in text for s in ("memoryerror", "cannot allocate", "bad_alloc", "out of memory", "std::bad_alloc")):
        return f"out of memory (RLIMIT_AS {mem_gib:g} GiB)"
    if done["rc"] < 0:
        return f"killed by signal {-done['rc']}"
    lines = [ln for ln in done["stderr"].strip().splitlines() if ln.strip()]
    return f"failed (exit {done['rc']}): {lines[-1][-300:] if lines else 'no message'}"


def _fit_command(name: str, data_dir: Path, args: argparse.Namespace, batches: int | None) -> list[str]:
    mlfactory = str(Path(sys.executable).parent / "mlfactory")
    command = [mlfactory, "fit", "--model", name, "--data.data_dir", str(data_dir), "--data.threads", "2",
               "--record.importance_samples", "0", "--record.plots", "false", "--trainer.default_root_dir", "runs"]
    if name == "lstm":
        command += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(batches),
                    "--trainer.limit_val_batches", str(batches), "--data.seq_len", str(LSTM_SEQ_LEN),
                    "--data.batch_size", str(LSTM_BATCH)]
    else:
        command += ["--model.n_estimators", str(args.rounds)]
    return command


def measure(name: str, data_dir: Path, args: argparse.Namespace, batches: int | None = None) -> dict:
    """One measurement in a fresh, capped process (under the lock when asked); its figures or why it stopped."""
    with tempfile.TemporaryDirectory(prefix=f"mlfactory-10m-{name}-") as scratch:
        if name in CHILDREN:
            command = [sys.executable, __file__, "--child", name, "--data", str(data_dir)]
        else:
            command = _fit_command(name, data_dir, args, batches)
        stop_at = LSTM_EPOCH_END if name == "lstm" and args.lstm_stop_at_epoch_end else None
        with _locked(args.lock) as waited:
            code = _commit()  # the working tree the process imports: others may commit while a run waits for the lock
            done = run_capped(command, Path(scratch), args.timeout, args.mem_gib, stop_at, args.rss_gib)
        result = {"measurement": name, "command": " ".join(command), "lock_wait_s": waited,
                  "started": time.strftime("%H:%M:%S UTC", time.gmtime(time.time() - done["wall_s"])),
                  "code": code,
                  **{k: v for k, v in done.items() if k not in ("stdout", "stderr", "rc")}}
        if batches is not None:
            result["batches"] = batches
        if done["rc"] != 0:
            result["status"] = _failure(done, args.timeout, args.mem_gib, args.rss_gib)
            result["error_tail"] = done["stderr"].strip().splitlines()[-8:]
            return result
        result["status"] = "ok"
        if name in CHILDREN:
            result.update(json.loads(done["stdout"].strip().splitlines()[-1]))  # peak_bytes: the child's own VmHWM
        else:
            result.update(_fit_figures(name, Path(scratch), done))
        return result


def _fit_figures(name: str, scratch: Path, done: dict) -> dict:
    """What a fit's run record and console say: train/record seconds, rounds and seconds per round, or samples/s."""
    found = sorted(scratch.glob("runs/lightning_logs/*/*/metrics/training_metrics.json"))
    metrics = json.loads(found[-1].read_text()) if found else {}
    figures = {key: metrics.get(key) for key in ("train_seconds", "record_seconds")}
    text = done["stdout"] + "\n" + done["stderr"]
    if name == "lstm":
        training = text.split("Validation", 1)[0]  # the epoch bar before validation starts
        rates = re.findall(r"samples/s=([0-9.e+]+)", training)
        figures["bar_samples_per_s"] = float(rates[-1]) if rates else None  # since the epoch began, first batch included
        marks = _bar_marks(r"Epoch \d+:[^|]*\|[^|]*\|\s*(\d+)/\d+ \[([\d:]+)", training)
        steady = _steady_seconds(marks)
        figures["samples_per_s"] = None if not steady else LSTM_BATCH / steady
    else:
        summary = metrics.get("fit_summary") or {}
        figures["rounds_trained"] = summary.get("rounds_trained")
        figures.update(_round_seconds(text))
    return figures


def _bar_marks(pattern: str, text: str) -> dict[int, float]:
    """``{steps done: elapsed seconds}`` from a tqdm bar's ``k/N [mm:ss`` (or ``h:mm:ss``) updates."""
    marks: dict[int, float] = {}
    for done, elapsed in re.findall(pattern, text):
        parts = [int(p) for p in elapsed.split(":")]
        marks.setdefault(int(done), sum(p * 60**i for i, p in enumerate(reversed(parts))))
    return marks


def _steady_seconds(marks: dict[int, float]) -> float | None:
    """Seconds per step from the first step's end to the last's (the first step pays the warm-up)."""
    if 1 not in marks or max(marks) < 2:
        return None
    last = max(marks)
    return (marks[last] - marks[1]) / (last - 1)


def _round_seconds(text: str) -> dict:
    """Seconds per round from a boosting round bar (``k/N [mm:ss<``): first round's end to the last's."""
    marks = _bar_marks(r"rounds:[^|]*\|[^|]*\|\s*(\d+)/\d+ \[([\d:]+)", text)
    return {"first_round_s": marks.get(1), "round_s": _steady_seconds(marks)}


# --------------------------------------------------------------------------- data facts, table


def data_facts(data_dir: Path) -> dict:
    """Rows, features and feature bytes per split, and the training windows at the lstm's seq_len (from the files)."""
    import pyarrow.parquet as pq

    from mlfactory.data.contract import is_reserved

    facts: dict = {"data_dir": str(data_dir), "rows": {}, "feature_bytes": {}}
    for split in SPLITS:
        meta = pq.ParquetFile(data_dir / f"{split}_scaled.parquet")
        features = [c for c in meta.schema_arrow.names if not is_reserved(c)]
        facts["rows"][split] = meta.metadata.num_rows
        facts["feature_bytes"][split] = meta.metadata.num_rows * len(features) * 4
        facts["n_features"] = len(features)
    facts["feature_bytes"]["total"] = sum(facts["feature_bytes"][s] for s in SPLITS)
    blocks, previous = 0, None
    for batch in pq.ParquetFile(data_dir / "train_scaled.parquet").iter_batches(batch_size=1 << 20, columns=["symbol"]):
        symbols = batch.column(0).to_pylist()
        blocks += sum(1 for i, s in enumerate(symbols) if s != (symbols[i - 1] if i else previous))
        previous = symbols[-1]
    facts["train_series"] = blocks
    facts["train_windows"] = facts["rows"]["train"] - blocks * (LSTM_SEQ_LEN - 1)
    return facts


def _when(result: dict) -> str:
    return f"; started {result['started']} on {result['code']}" if "started" in result else ""


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio_row(figure: str, value: float | None, goal: float | None, detail: str) -> dict:
    met = None if value is None or goal is None else value <= goal
    return {"figure": figure, "value": value, "goal": goal, "met": met, "detail": detail}


def summary_rows(report: dict) -> list[dict]:
    """The table's rows: each ratio with its goal, from the measurements in ``report``."""
    facts, rows = report["data"], []
    total = facts["feature_bytes"]["total"]
    by_name: dict[str, list[dict]] = {}
    for r in report["results"]:
        by_name.setdefault(r["measurement"], []).append(r)
    read = next((r for r in by_name.get("read", []) if r["status"] == "ok"), None)
    container = next((r for r in by_name.get("container", []) if r["status"] == "ok"), None)
    for r in by_name.get("read", []) + by_name.get("container", []):
        what = ("pyarrow read_table, each split in turn" if r["measurement"] == "read"
                else "container from_parquet_dir, 3 splits")
        if r["status"] != "ok":
            rows.append(_ratio_row(f"{what}: {r['status']}", None, None, ""))
            continue
        held = (f", held {r['held_bytes'] / GIB:.2f} GiB" if r["measurement"] == "container" else
                " (train's read); per split " + ", ".join(f"{v:.1f}" for v in r["seconds_per_split"].values()) + " s")
        rows.append(_ratio_row(f"{what}: peak RSS / feature bytes", r["peak_bytes"] / total, None,
                               f"{r['seconds']:.1f} s wall (process: {r['cpu_s']:.0f} s CPU), peak "
                               f"{r['peak_bytes'] / GIB:.2f} GiB{held}; load "
                               f"{r['load_before']:.1f}->{r['load_after']:.1f}{_when(r)}"))
    if read and container:
        rows.append(_ratio_row("loading: container seconds / pyarrow seconds", container["seconds"] / read["seconds"],
                               GOALS["loading"], f"{container['seconds']:.1f} s / {read['seconds']:.1f} s"))
        rows.append(_ratio_row("loading: container peak / pyarrow peak", container["peak_bytes"] / read["peak_bytes"],
                               GOALS["loading"], f"{container['peak_bytes'] / GIB:.2f} / {read['peak_bytes'] / GIB:.2f} GiB"))
    for name in ("xgboost", "lightgbm", "lstm"):
        for r in by_name.get(name, []):
            label = f"{name} fit" if name != "lstm" else f"lstm epoch ({r['batches']} batches)"
            goal = GOALS["lstm" if name == "lstm" else "boosting"]
            if r["status"] != "ok":
                rows.append(_ratio_row(f"{label}: {r['status']}", None, goal,
                                       f"after {r['wall_s']:.0f} s; peak so far {r['peak_bytes'] / GIB:.2f} GiB"))
                continue
            record = ("stopped at the epoch's end (run record not written)" if r.get("stopped") else
                      f"train_seconds {r['train_seconds']:.0f}, record_seconds {r['record_seconds']:.0f}")
            context = (f"peak {r['peak_bytes'] / GIB:.2f} GiB; process {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU; "
                       f"{record}; load {r['load_before']:.1f}->{r['load_after']:.1f}")
            if name == "lstm":
                rate = r.get("samples_per_s")
                if rate:
                    hours = facts["train_windows"] / rate / 3600
                    context += (f"; {rate:,.0f} samples/s (wall) -> a full epoch of {facts['train_windows']:,} windows "
                                f"~{hours:.1f} h")
            else:
                context += (f"; {r['rounds_trained']} rounds, {_num(r['round_s'])} s/round after the first "
                            f"(first round's end at {_num(r['first_round_s'])} s)")
            rows.append(_ratio_row(f"{label}: peak RSS / feature bytes", r["peak_bytes"] / total, goal,
                                   context + _when(r)))
    return rows


def markdown(report: dict) -> str:
    """The report as a markdown table plus the data line."""
    facts = report["data"]
    lines = [f"Data: {facts['rows']['train']:,} / {facts['rows']['val']:,} / {facts['rows']['test']:,} rows "
             f"(train / val / test) x {facts['n_features']} float32 features = "
             f"{facts['feature_bytes']['total'] / GIB:.2f} GiB of features ({facts['train_series']} training series, "
             f"{facts['train_windows']:,} training windows at seq_len {LSTM_SEQ_LEN}). Command: `{report['command']}`; "
             f"{report['when']}, code at {report['commit']}.", "",
             "| figure | value | goal | met | detail |", "|---|---|---|---|---|"]
    for row in summary_rows(report):
        value = "-" if row["value"] is None else f"{row['value']:.2f}x"
        goal = "-" if row["goal"] is None else f"<= {row['goal']:g}x"
        met = "-" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['figure']} | {value} | {goal} | {met} | {row['detail']} |")
    return "\n".join(lines)


def _commit() -> str:
    """HEAD's short hash, with ``+dirty`` when ``mlfactory/`` has uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "mlfactory"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of all three splits together (70/15/15)")
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    parser.add_argument("--rounds", type=int, default=10, help="boosting rounds (--model.n_estimators)")
    parser.add_argument("--lstm-batches", type=int, nargs="+", default=[100], help="K training and val batches")
    parser.add_argument("--lstm-stop-at-epoch-end", action="store_true",
                        help="stop the lstm fit once its epoch and validation are done (skip the run record's "
                        "prediction of the whole val and test splits)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    parser.add_argument("--mem-gib", type=float, default=18.0, help="RLIMIT_AS of each measurement's process, GiB")
    parser.add_argument("--rss-gib", type=float, default=16.0,
                        help="kill a measurement whose resident memory passes this, GiB (RLIMIT_AS counts "
                        "address space, which allocators reserve well beyond what they touch)")
    parser.add_argument("--lock", type=Path, help="flock this file around each measurement (e.g. /tmp/lead/bigmem.lock)")
    parser.add_argument("--data", type=Path, help="an existing split directory instead of the tiled one")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mlfactory-rows-10m.json"))
    parser.add_argument("--update", action="store_true",
                        help="keep --out's results of the measurements not run now (same data) and replace the others")
    parser.add_argument("--table", type=Path, help="print the markdown table of a JSON report written before, and exit")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.data)))
        return
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    if args.data is None:
        counts = {s: int(args.rows * SHARES[s]) for s in SPLITS}
        counts["train"] += args.rows - sum(counts.values())
        print(f"data: tiled split directory {counts} under {cache_root()} (built on first use)", file=sys.stderr)
    data_dir = args.data.resolve() if args.data else tiled_split_dir(counts)
    report = {"command": " ".join(["benchmarks/rows_10m.py", *sys.argv[1:]]), "commit": _commit(),
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "mem_gib_cap": args.mem_gib, "data": data_facts(data_dir), "results": []}
    if args.update and args.out.is_file():  # keep the other measurements of an earlier run on the same data
        earlier = json.loads(args.out.read_text())
        if earlier["data"]["data_dir"] != report["data"]["data_dir"]:
            sys.exit(f"rows_10m: {args.out} holds a run on {earlier['data']['data_dir']}, not {data_dir}; "
                     "pass another --out or drop --update")
        kept = [r for r in earlier["results"] if r["measurement"] not in args.only]
        report["results"] = kept
        report["command"] = f"{earlier['command']}; then {report['command']}"
        report["when"] = f"{earlier['when']}; then {report['when']}"
        report["commit"] = f"{earlier['commit']}; then {report['commit']}"
    plan = [(name, k) for name in args.only for k in (args.lstm_batches if name == "lstm" else [None])]
    for name, batches in plan:
        result = measure(name, data_dir, args, batches)
        report["results"].append(result)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"{name}{'' if batches is None else f' K={batches}'}: {result['status']}, {result['wall_s']:.0f} s, "
              f"peak {result['peak_bytes'] / GIB:.2f} GiB", file=sys.stderr, flush=True)
    print(markdown(report))


if __name__ == "__main__":
    main()
