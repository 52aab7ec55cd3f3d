"""Benchmark 4, data loading: the container reads the three splits vs pyarrow reading them into numpy.

Target: ``TimeSeriesDataContainer.from_parquet_dir(dir, horizon=5)`` takes at most 1.5 x pyarrow's
own read of the same three files into numpy.

The pyarrow side, per split: ``pyarrow.parquet.read_table(path)``, then the feature columns stacked
into one C-contiguous (n, 180) float32 array (``np.stack(columns, axis=1)``, the fastest of the
simple ways measured: column-by-column assignment and a transpose copy are slower), and the label,
weight and datetime columns as numpy arrays. The feature names are known in advance (not timed).
That is the least work that yields what the container holds; the container also checks the data
contract (types, NaN/inf, labels, time order, symbols) and groups rows by symbol.

Both sides use the benchmark's thread count (``pyarrow.set_cpu_count``). One untimed read of each
side first (page cache, imports), then the two alternate; the ratio is the median of per-repeat
ratios. A cProfile of one container read shows where its time goes.
"""

from __future__ import annotations

from bench_common import Report, Row, child_main, clock_name, median, now, spread
from data import HORIZON, SPLITS, bench_split_dir

TARGET = 1.5


def run(quick: bool, threads: int) -> Report:
    import pyarrow as pa

    from mlfactory.data.container import TimeSeriesDataContainer

    pa.set_cpu_count(threads)
    directory = bench_split_dir()
    names = _feature_names(directory)
    repeats = 3 if quick else 7

    def container() -> None:
        TimeSeriesDataContainer.from_parquet_dir(directory, HORIZON)

    def pyarrow_only() -> None:
        for split in SPLITS:
            _pyarrow_read(directory / f"{split}_scaled.parquet", names)

    container(), pyarrow_only()  # warm-up: page cache, lazy imports
    times = {"container": [], "pyarrow": []}
    sides = [("container", container), ("pyarrow", pyarrow_only)]
    for r in range(repeats):
        for name, fn in sides if r % 2 == 0 else sides[::-1]:
            start = now()
            fn()
            times[name].append(now() - start)
    judged = "cpu" if threads == 1 else "wall"
    ratios = [getattr(c, judged) / getattr(p, judged) for c, p in zip(times["container"], times["pyarrow"])]
    wall = [c.wall / p.wall for c, p in zip(times["container"], times["pyarrow"])]
    c_s = median([getattr(t, judged) for t in times["container"]])
    p_s = median([getattr(t, judged) for t in times["pyarrow"]])
    report = Report()
    report.rows.append(Row(
        "loading", "container read of 3 splits / pyarrow read into numpy", median(ratios), "<=", TARGET,
        detail=f"{clock_name(threads)} {spread(ratios)}; wall time {spread(wall)}; container {c_s:.2f} s, "
        f"pyarrow {p_s:.2f} s for 3 x 50,000 x 180",
    ))
    report.notes.append(_profile_note(container))
    return report


def _feature_names(directory) -> list[str]:
    import pyarrow.parquet as pq

    from mlfactory.data.container import is_reserved

    return [c for c in pq.read_schema(directory / f"{SPLITS[0]}_scaled.parquet").names if not is_reserved(c)]


def _pyarrow_read(path, names: list[str]) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {
        "features": np.stack([table.column(c).to_numpy() for c in names], axis=1),
        "labels": table.column(f"label_h{HORIZON}").to_numpy(),
        "weights": table.column(f"sample_weight_h{HORIZON}").to_numpy(),
        "datetime": table.column("datetime").to_numpy(),
    }


def _profile_note(fn) -> str:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(v[2] for v in stats.values())
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    lines = [
        "Where the container's read goes (cProfile of one read of the three splits, own time per function, "
        f"{total:.2f} s in all):",
        "",
        "| function | own s | share |",
        "|---|---|---|",
    ]
    for (path, line, name), v in top:
        where = path.split("site-packages/")[-1].split("/work/main/")[-1]
        lines.append(f"| `{name}` ({where}:{line}) | {v[2]:.3f} | {v[2] / total:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    child_main(run)
