"""A full disk, for real: a tiny tmpfs, filled up. No run may end looking alive or complete.

Mounting needs root (as in this project's container); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback

from mlfactory import FactoryDataModule, RunRecord, create_model
from mlfactory.cli import main
from mlfactory.evaluation.compare import run_row

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
PAGE = 4096


MAX_DISK = 16 * 2**20


def fill(disk: Path, leave_bytes: int = 0) -> None:
    """Fill ``disk`` to the last page, then give back ``leave_bytes``.

    Only ever a tiny file system: should the tmpfs be gone (unmounted under us), this must not fill
    the machine's real disk.
    """
    stats = os.statvfs(disk)
    assert stats.f_blocks * stats.f_frsize <= MAX_DISK, f"{disk} is not the tiny test file system"
    filler = disk / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * PAGE)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave_bytes))


@pytest.fixture
def tiny_disk(tmpfs) -> Path:
    """A 2 MiB tmpfs (the ``tmpfs`` fixture of tests/conftest.py)."""
    return tmpfs("disk", size="2m")


def runs_under(root: Path) -> list[Path]:
    return sorted(root.glob("lightning_logs/*/*"))


@pytest.mark.parametrize("leave_kb", [0, 8, 64])
def test_fit_on_a_full_disk_fails_in_one_line_and_never_looks_alive(leave_kb, sample_dir, tiny_disk, capsys):
    # 0: nothing fits, not even status.json; 8: status.json `running` fits, then the disk is full, so
    # `failed` must be written in place; 64: the run gets as far as its checkpoint
    fill(tiny_disk, leave_kb * 1024)
    code = main(["fit", "--model", "xgboost", "--model.n_estimators", "5", "--data.data_dir", str(sample_dir),
                 "--trainer.default_root_dir", str(tiny_disk), *QUIET])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("mlfactory: error: the disk is full")
    for run in runs_under(tiny_disk):
        # this process is alive, so a `running` left behind would look alive: it must not be
        assert run_row(run)["status"] in ("failed", "broken"), (run / "status.json").read_text()
    if leave_kb:
        record = json.loads((runs_under(tiny_disk)[0] / "status.json").read_text())
        assert record["status"] == "failed" and "No space left on device" in record["error"]


class FillDisk(Callback):
    """Another process fills the disk while the run trains, and again as soon as a write fails and frees space."""

    def on_train_start(self, trainer, pl_module) -> None:
        fill(Path(trainer.default_root_dir))

    def on_exception(self, trainer, pl_module, exception) -> None:
        fill(Path(trainer.default_root_dir))


def test_a_run_that_cannot_write_its_status_is_still_marked_failed(sample_dir, tiny_disk):
    trainer = L.Trainer(
        max_epochs=1, default_root_dir=str(tiny_disk), callbacks=[FillDisk(), RunRecord()],
        enable_progress_bar=False, enable_model_summary=False,
    )
    with pytest.raises(OSError) as error:
        trainer.fit(create_model("xgboost", n_estimators=5), datamodule=FactoryDataModule(data_dir=str(sample_dir)))
    assert error.value.errno == 28  # ENOSPC
    run = Path(trainer.log_dir)
    record = json.loads((run / "status.json").read_text())
    # no room for the atomic write's second file: the small record was written in place
    assert record["status"] == "failed" and "No space left" in record["error"] and "traceback" not in record
    assert record["pid"] == os.getpid()
    assert not list(run.rglob("*.partial"))  # no half-written temporary files hold the space


def test_compare_on_a_full_disk_fails_in_one_line_and_leaves_no_half_file(tmp_path, tiny_disk, capsys):
    run = tmp_path / "runs" / "xgboost" / "a"
    (run / "metrics").mkdir(parents=True)
    (run / "config").mkdir()
    (run / "status.json").write_text(json.dumps({"status": "complete", "stage": "test"}))
    (run / "config" / "model_config.json").write_text(json.dumps({"name": "xgboost"}))
    (run / "config" / "training_config.json").write_text(json.dumps({"data": {"data_dir": None, "horizon": 5}}))
    (run / "metrics" / "evaluation_metrics.json").write_text(json.dumps({"test": {"balanced_accuracy": 0.4}}))
    fill(tiny_disk)
    assert main(["compare", str(tmp_path / "runs"), "--output", str(tiny_disk)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leaderboard.csv: the disk is full" in err
    assert not [p for p in tiny_disk.iterdir() if "leaderboard" in p.name]
