"""Where prepare writes: one clear line for every unwritable output, and no temporary that looks like output.

Read-only, full and mount-point outputs use a real tmpfs mounted for the test (root can write into a
directory made read-only with chmod, so chmod proves nothing here). Where mounting is not allowed the
test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.data.container import UNFINISHED_MARKER, TimeSeriesDataContainer
from mlfactory.data.synthetic import generate_bars
from mlfactory.errors import DataError
from mlfactory.prepare import OutputExistsError, PrepareError, prepare_splits

FAST = {"timeframes": ["5min", "15min"]}


@pytest.fixture(scope="module")
def short_bars() -> pd.DataFrame:
    return generate_bars(n_bars=3000, symbols=["SYNA", "SYNB"], seed=4)


def one_line_error(argv: list[str], capsys) -> str:
    code = main(["prepare", *argv, "--no_progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("mlfactory: error: ") and err.count("\n") == 1, err
    return err


def test_an_output_under_a_regular_file_is_one_line(short_bars, tmp_path, capsys):
    short_bars.to_csv(tmp_path / "bars.csv", index=False)
    (tmp_path / "afile").write_text("not a directory")
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(tmp_path / "afile" / "sub")], capsys)
    assert f"lies under {tmp_path / 'afile'}, which is a file" in err
    assert (tmp_path / "afile").read_text() == "not a directory"


def test_a_read_only_file_system_fails_before_any_computation(short_bars, tmp_path, tmpfs, capsys):
    read_only = tmpfs("ro", read_only=True)
    bad = short_bars.copy()
    bad.loc[2500, "volume"] = -1  # would fail while reading the bars, which must come later
    with pytest.raises(PrepareError, match=r"cannot write the output .*/ro/splits: Read-only file system"):
        prepare_splits(bad, read_only / "splits", **FAST)
    bad.to_csv(tmp_path / "bars.csv", index=False)
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(read_only / "a" / "b")], capsys)
    assert "Read-only file system" in err and "[EROFS]" in err


def test_a_mount_point_output_is_refused_and_a_folder_inside_it_works(short_bars, tmpfs, capsys, tmp_path):
    point = tmpfs("mnt", size="16m")
    short_bars.to_csv(tmp_path / "bars.csv", index=False)
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(point)], capsys)
    assert "is a mount point" in err and f"e.g. {point / 'splits'}" in err
    assert list(point.iterdir()) == []
    out = prepare_splits(short_bars, point / "splits", **FAST)
    TimeSeriesDataContainer.from_parquet_dir(out, horizon=20)


def test_a_full_disk_is_one_line_and_leaves_nothing(short_bars, tmpfs, capsys, tmp_path):
    full = tmpfs("full", size="256k")
    short_bars.to_csv(tmp_path / "bars.csv", index=False)
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(full / "data" / "splits"),
                          "--timeframes", "5min", "15min"], capsys)
    assert "No space left on device" in err and "The file system is full" in err
    assert list(full.iterdir()) == []  # no partial split set, no temporary, not even the parents it made


def test_replacing_an_output_on_a_full_disk_keeps_the_old_one(short_bars, tmpfs):
    full = tmpfs("full", size="1m")
    out = prepare_splits(short_bars.iloc[:2600], full / "splits", horizons=(5,), timeframes=["5min"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(PrepareError, match="No space left on device"):
        prepare_splits(short_bars, out, overwrite=True, **FAST)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in full.iterdir()) == ["splits"]


def test_the_overwrite_hint_names_the_flag_on_the_command_line_and_the_keyword_in_python(short_bars, tmp_path, capsys):
    short_bars.to_csv(tmp_path / "bars.csv", index=False)
    out = prepare_splits(short_bars, tmp_path / "out", **FAST)
    with pytest.raises(OutputExistsError, match=r"pass overwrite=True to replace it") as caught:
        prepare_splits(short_bars, out, **FAST)
    assert "--overwrite" not in str(caught.value)
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(out)], capsys)
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep")
    err = one_line_error(["--input", str(tmp_path / "bars.csv"), "--output", str(tmp_path / "notes"), "--overwrite"],
                         capsys)
    assert "--overwrite only replaces split directories" in err


# --------------------------------------------------------------------------------------------------
# Temporaries: marked, refused by the loader, cleaned once their process is gone
# --------------------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_sigkilled_prepare_leaves_a_marked_temporary_that_the_next_run_removes(short_bars, tmp_path):
    short_bars.to_parquet(tmp_path / "bars.parquet")
    out = tmp_path / "out"
    code = (
        "import sys; from mlfactory.prepare import prepare_splits; "
        f"prepare_splits(sys.argv[1], sys.argv[2], timeframes=['5min', '15min'])"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "bars.parquet"), str(out)],
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while not partial and time.monotonic() < deadline and process.poll() is None:
        partial = list(tmp_path.glob("out.*.partial"))
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert partial, "prepare finished before it could be killed, or never started"
    [left] = partial
    assert left.name.startswith(f"out.{process.pid}-") and (left / UNFINISHED_MARKER).is_file()
    assert not out.exists()
    prepare_splits(tmp_path / "bars.parquet", out, **FAST)  # the next run removes the dead run's temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.parquet", "out"]


def test_the_loader_refuses_a_complete_but_unfinished_split_set(short_bars, tmp_path):
    done = prepare_splits(short_bars, tmp_path / "done", **FAST)
    assert not (done / UNFINISHED_MARKER).exists()
    stale = tmp_path / f"out.{dead_pid()}-0123abcd.partial"
    shutil.copytree(done, stale)
    (stale / UNFINISHED_MARKER).write_text("killed")
    with pytest.raises(DataError, match=r"is an unfinished mlfactory prepare output .* interrupted") as caught:
        TimeSeriesDataContainer.from_parquet_dir(stale, horizon=20)
    assert "\n" not in str(caught.value)


def test_only_stale_temporaries_of_the_same_output_are_removed(short_bars, tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = {
            f"out.{alive.pid}-0123abcd.partial",  # its process still runs
            f"other.{dead_pid()}-0123abcd.partial",  # another output
            f"out.{dead_pid()}-nothex00.partial",  # not a name mlfactory makes
        }
        gone = {f"out.{dead_pid()}-0123abcd.partial", f"out.{dead_pid()}-89abcdef.partial"}
        for name in keep | gone:
            (tmp_path / name).mkdir()
            (tmp_path / name / UNFINISHED_MARKER).write_text("")
        prepare_splits(short_bars, tmp_path / "out", **FAST)
        left = {p.name for p in tmp_path.iterdir()}
        assert left == keep | {"out"}
    finally:
        alive.kill()
        alive.wait()
