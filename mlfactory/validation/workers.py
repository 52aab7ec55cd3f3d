"""Fit the splits of a cross-validation in forked worker processes (``--cv.workers``, docs/validation.md).

Each split runs in a process forked from the one that prepared the data, so the development arrays
(and every other piece of fold-independent work) are shared copy-on-write instead of read again.
Only the small results (the split's summary, test rows and probabilities) come back, through a pipe.

Inside the worker, the split runs in a new thread. An OpenMP runtime (torch's, LightGBM's, XGBoost's)
keeps its thread pool in the thread that started it; a forked child inherits that pool's bookkeeping
but not its threads, so its first multi-threaded region in the same thread would wait forever for
them. A new thread starts with no pool, which makes a fork safe even after the parent has fitted a
multi-threaded model itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from mlfactory.errors import RunError

Item = TypeVar("Item")


class WorkerDied(RunError):
    """A worker process ended without handing back its result (killed, out of memory, crashed)."""


def fork_available() -> bool:
    """Whether this platform can fork worker processes (Linux and macOS can; Windows cannot)."""
    return "fork" in multiprocessing.get_all_start_methods()


def run_forked(
    task: Callable[[Item], Any],
    items: Sequence[Item],
    workers: int,
    on_result: Callable[[Item, Any], None],
    describe: Callable[[Item], str] = str,
) -> None:
    """Call ``task(item)`` for every item, at most ``workers`` forked processes at a time.

    ``on_result(item, result)`` runs in this process as each result arrives (in order of completion).
    When a task raises, its exception is raised here (the worker's traceback added as a note); when a
    worker dies without a result, :class:`WorkerDied` is raised. Either way, and when ``on_result``
    raises, the workers still running are terminated first. ``task`` and the items are inherited by
    the fork, so they need not be picklable; results and exceptions must be.
    """
    context = multiprocessing.get_context("fork")
    waiting = list(items)
    running: dict[Connection, tuple[Item, Any]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                item = waiting.pop(0)
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(task, item, writer, os.getpid()),
                                          name=f"cv-{describe(item)}")
                process.start()
                writer.close()  # the child's copy stays open until it has sent; then EOF means it died
                running[reader] = (item, process)
            for reader in wait(list(running)):
                item, process = running.pop(reader)
                try:
                    kind, payload, text = reader.recv()
                except EOFError:
                    process.join()
                    raise WorkerDied(f"{describe(item)}: its worker process (pid {process.pid}) "
                                     f"{_ending(process.exitcode)} before handing back a result; the run is marked "
                                     "failed. If the system ran out of memory, use fewer --cv.workers") from None
                except Exception as err:  # sent, but it cannot be rebuilt here (an exception that does not unpickle)
                    process.join()
                    raise WorkerDied(f"{describe(item)}: its result could not be read back from the worker "
                                     f"({type(err).__name__}: {err}); the run is marked failed") from None
                finally:
                    reader.close()
                process.join()
                if kind == "error":
                    _add_note(payload, f"in the worker process of {describe(item)}:\n{text}")
                    raise payload
                on_result(item, payload)
    finally:
        for reader, (_, process) in running.items():
            process.terminate()
            process.join()
            reader.close()


def _child(task: Callable[[Any], Any], item: Any, conn: Connection, parent: int) -> None:
    """The worker: run ``task(item)`` in a fresh thread (see the module docstring), send the outcome."""
    _end_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    outcome: list[tuple[str, Any, str]] = []

    def work() -> None:
        try:
            outcome.append(("ok", task(item), ""))
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent
            outcome.append(("error", err, traceback.format_exc()))

    thread = threading.Thread(target=work, name="cv-worker")
    thread.start()
    thread.join()
    kind, payload, text = outcome[0]
    try:
        conn.send((kind, payload, text))
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
        conn.send(("error", RunError(f"{type(payload).__name__}: {payload}"), text))
    conn.close()


def _end_with_parent() -> None:
    """On Linux, have the kernel terminate this worker when the process that forked it dies (killed, or
    interrupted), instead of leaving it fitting on its own; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


_PR_SET_PDEATHSIG = 1


def _add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (Python 3.11+; on 3.10 the note is kept in ``__notes__`` unprinted)."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:
        err.__notes__ = [*getattr(err, "__notes__", []), note]


def _ending(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"
