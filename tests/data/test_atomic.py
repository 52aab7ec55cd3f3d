"""The one atomic writer (mlfactory/atomic.py): a reader sees the old file or the whole new one, and a
failed write leaves neither a half file nor its temporary."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from mlfactory.atomic import (
    is_partial,
    replace_dir,
    replacing,
    sha256_file,
    write_bytes,
    write_json,
    write_text,
)


def test_replacing_renames_on_success_and_removes_the_temporary_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with replacing(target) as tmp:
            assert is_partial(tmp) and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]
    with replacing(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_replacing_removes_a_temporary_folder_too(tmp_path):
    with pytest.raises(OSError):
        with replacing(tmp_path / "bundle") as tmp:
            (tmp / "model").mkdir(parents=True)
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_text_and_json(tmp_path):
    assert write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"  # makes the folder
    assert write_text(tmp_path / "t.txt", "naïve").read_bytes() == "naïve".encode("utf-8")
    path = write_json(tmp_path / "m.json", {"loss": np.float64("nan"), "f1": [1.0, float("inf")], "when": tmp_path})
    assert json.loads(path.read_text()) == {"loss": None, "f1": [1.0, None], "when": str(tmp_path)}
    assert path.read_text().startswith('{\n  "loss": null')  # indented, as the run record has always been


def test_write_json_leaves_the_old_file_when_the_payload_cannot_be_written(tmp_path):
    target = write_json(tmp_path / "status.json", {"status": "running"})

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no text")

    with pytest.raises(ValueError, match="no text"):
        write_json(target, {"status": Unprintable()})
    assert json.loads(target.read_text()) == {"status": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_replace_dir_replaces_a_folder_and_puts_it_back_when_the_new_one_cannot_move(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old").write_text("1")
    new = tmp_path / "new"
    new.mkdir()
    (new / "fresh").write_text("2")
    replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["fresh"] and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with pytest.raises(OSError):
        replace_dir(tmp_path / "missing", target)  # the rename fails after the old folder moved aside
    assert sorted(p.name for p in target.iterdir()) == ["fresh"] and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    replace_dir(target, tmp_path / "moved")  # no folder at the target: a plain rename
    assert not target.exists() and (tmp_path / "moved" / "fresh").is_file()


def test_sha256_file_reads_in_blocks(tmp_path):
    data = os.urandom((1 << 20) + 7)  # more than one block
    path = write_bytes(tmp_path / "blob", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
