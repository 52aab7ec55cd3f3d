"""Where a study lives, and how many workers share it without losing or repeating a trial.

The default storage is a SQLite file in the study directory (``lightning_logs/tune/<study>/study.db``);
``--tune.storage postgresql://user@host:port/db`` (or any SQLAlchemy URL Optuna's ``RDBStorage`` takes)
shares one study between processes and machines. Every storage records a heartbeat of each running
trial: a worker that dies mid-trial (killed, out of memory, power cut) stops beating, and the next worker
to look marks its trial failed and enqueues it again with the same parameters (``RetryHeartbeatStaleTrialCallback``).

Workers take trial slots under a lock (PostgreSQL: an advisory lock; SQLite: a file lock beside the
database), so a study of ``n_trials`` ends with exactly that many trials however many workers share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlfactory.tuning import TuneError


def default_url(study_dir: Path) -> str:
    """The SQLite file of a study directory."""
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def open_storage(url: str, heartbeat: int, retries: int) -> Any:
    """An Optuna ``RDBStorage`` on ``url`` with heartbeats every ``heartbeat`` s; one clear error if unreachable.

    A trial whose heartbeat is older than ``3 * heartbeat`` s is marked failed and retried up to
    ``retries`` times.
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    shown = redacted(url)
    if "://" not in url:
        raise TuneError(f"--tune.storage {shown} is not a database URL; use e.g. "
                        "postgresql://user:password@host:5432/db or sqlite:///path/study.db")
    if heartbeat < 1:
        raise TuneError(f"--tune.heartbeat {heartbeat} must be at least 1 second")
    url = _with_driver(url)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries > 0 else None
            return RDBStorage(url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat,
                              grace_period=3 * heartbeat, heartbeat_stale_trial_callback=retry)
    except ImportError:
        raise TuneError(f"the study storage {shown} needs a database driver that is not installed; for PostgreSQL: "
                        "pip install psycopg2-binary (or mlfactory's postgres extra)") from None
    except (SQLAlchemyError, ArgumentError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TuneError(f"cannot open the study storage {shown} ({type(err).__name__}: {first}); check that the "
                        "database server is running and reachable, and the URL's user, password and database") from None
    except optuna.exceptions.StorageInternalError as err:
        raise TuneError(f"cannot open the study storage {shown} ({err}); check the database server") from None


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 picks psycopg 3, mlfactory ships psycopg2."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {}


def redacted(url: str) -> str:
    """The URL without its password."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in credentials else ''}@{host}"


@contextlib.contextmanager
def slot_lock(storage: Any, url: str, study_name: str) -> Iterator[None]:
    """Hold the study's trial-slot lock: one worker at a time counts the trials and asks for a new one."""
    with _lock(storage.engine, url, f"slots:{study_name}"):
        yield


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold a lock while the storage's tables and the study are created: workers starting together on an
    empty PostgreSQL database would otherwise race to create the same tables (one fails)."""
    if not url.startswith("postgresql"):
        with _lock(None, url, "create"):
            yield
        return
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(_with_driver(url), **_engine_kwargs(url))
    except ImportError:
        raise TuneError(f"the study storage {redacted(url)} needs a database driver that is not installed; for "
                        "PostgreSQL: pip install psycopg2-binary (or mlfactory's postgres extra)") from None
    try:
        with _lock(engine, url, "create"):
            yield
    except SQLAlchemyError as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TuneError(f"cannot open the study storage {redacted(url)} ({type(err).__name__}: {first}); check that "
                        "the database server is running and reachable, and the URL's user, password and database"
                        ) from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _lock(engine: Any, url: str, name: str) -> Iterator[None]:
    """A lock every worker of the database sees: a PostgreSQL advisory lock, or a file lock beside a SQLite file."""
    if url.startswith("postgresql"):
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(f"mlfactory-tune:{name}".encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
    elif url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).parent.is_dir():
        lock = Path(url.removeprefix("sqlite:///") + ".lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:  # another database: no cross-process lock here; a crowd of workers may overshoot n_trials by a few
        yield


class Heartbeat:
    """Records a running trial's heartbeat in a thread until :meth:`stop`."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"tune-heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._storage.record_heartbeat(self._trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # a database hiccup: the next beat tries again; a long outage fails the trial
                pass
