"""Temporaries of files and folders being written: named so nothing mistakes them for output.

Every writer in mlfactory (prepare's split directories, the sample data, bundles, streamed
predictions, ONNX files) writes beside the final place as ``<name>.<pid>-<random>.partial`` and renames
into place when complete. No loader accepts a ``.partial`` path (the split loader, ``ModelBundle.load``
and ``mlfactory predict``'s output check refuse it), and the writer's process id in the name lets the
next writer of the same target remove what a killed process left behind, without touching the
temporaries of a writer that is still running.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

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
