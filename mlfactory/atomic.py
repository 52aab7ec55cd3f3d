"""Writing files and folders atomically, and the temporaries that makes: named so nothing mistakes them for output.

Every writer in mlfactory (prepare's split directories, the sample data, bundles, streamed
predictions, ONNX files) writes beside the final place as ``<name>.<pid>-<random>.partial`` and renames
into place when complete. No loader accepts a ``.partial`` path (the split loader, ``ModelBundle.load``
and ``mlfactory predict``'s output check refuse it), and the writer's process id in the name lets the
next writer of the same target remove what a killed process left behind, without touching the
temporaries of a writer that is still running.

The writers: :func:`replacing` (a temporary path for any library's writer, renamed into place when the
block succeeds, removed when it fails), :func:`write_bytes`, :func:`write_text` and :func:`write_json`
on top of it, and :func:`replace_dir` for a finished folder. :func:`sha256_file` is the one file digest.

>>> import tempfile
>>> target = Path(tempfile.mkdtemp()) / "note.json"
>>> write_json(target, {"loss": float("nan")}) == target, json.loads(target.read_text())
(True, {'loss': None})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"


def partial_path(target: Path) -> Path:
    """A new temporary path for ``target``, in its folder: ``<name>.<pid>-<8 hex>.partial``."""
    return target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def is_partial(path: Path) -> bool:
    """Whether ``path`` names an unfinished temporary (see :func:`partial_path`)."""
    return Path(path).name.endswith(PARTIAL_SUFFIX)


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` whose writing process is gone; return what was removed.

    Only temporaries of this very target are considered (``<name>.<pid>-<hex>.partial``, and the hidden
    ``.<name>.tmp-<pid>-<hex>`` of older mlfactory versions), and only when no process with that id runs.
    """
    folder = target.parent
    if not folder.is_dir():
        return []
    patterns = (
        re.compile(re.escape(target.name) + r"\.(\d+)-[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX)),
        re.compile(r"\." + re.escape(target.name) + r"\.tmp-(\d+)-[0-9a-f]{8}"),
    )
    removed = []
    for path in folder.iterdir():
        match = next((m for m in (p.fullmatch(path.name) for p in patterns) if m), None)
        if match is None or process_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists; when that cannot be told, assume it does (keep its files)."""
    if pid == os.getpid():
        return True
    if os.name != "posix" or pid <= 0:
        return True  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A new temporary path beside ``target`` for the block to write; renamed onto ``target`` when the block
    ends without error, removed (file or folder) when it raises, so a failed write leaves no half file.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "data.bin"
    >>> with replacing(target) as tmp:
    ...     _ = tmp.write_bytes(b"ok")
    >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
    (b'ok', ['data.bin'])
    """
    target = Path(target)
    tmp = partial_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:  # after a successful rename there is nothing left to remove
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)  # a half-written temporary would hold space a full disk needs


def write_bytes(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (creating its folder): readers see the old file or the whole new one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target) as tmp:
        tmp.write_bytes(data)
    return target


def write_text(target: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically, as :func:`write_bytes`."""
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically. NaN and infinities become null (strict JSON); values
    JSON has no type for are written as their ``str``."""
    return write_text(target, json.dumps(finite_json(payload), indent=2, default=str))


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts, lists and tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``; a folder already there is replaced and then removed.

    The old folder is first renamed to a temporary (never loaded; removed now, or by the next writer if
    this process is killed); if ``tmp`` cannot take its place, the old folder is put back.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    old = partial_path(target)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
