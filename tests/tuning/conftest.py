"""A real PostgreSQL server for the shared-study tests, started on a loopback port as an unprivileged user."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = ("PostgreSQL's server binaries are absent (/usr/lib/postgresql/*/bin/postgres); install them with "
                "`apt-get install postgresql` (Debian/Ubuntu) to run the shared-study tests")


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--data.threads", "1"]


def tune_command(data: Path, root: Path, *extra: str) -> list[str]:
    """``mlfactory tune`` arguments of a small lightgbm study on ``data`` whose study directory lies under ``root``."""
    return ["tune", "--model", "lightgbm", "--data.data_dir", str(data), "--trainer.default_root_dir", str(root),
            "--model.n_jobs", "1", *QUIET, *extra]


@pytest.fixture(scope="session")
def tune_args():
    """:func:`tune_command`, for the tests of this folder."""
    return tune_command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/postgres`` of a throw-away server, stopped afterwards.

    Postgres refuses to run as root, so under root the server runs as ``nobody`` (``runuser``) in a
    directory it owns; trust authentication on the loopback address only.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip(INSTALL_HINT)
    bindir = Path(found[-1]).parent
    home = Path(tempfile.mkdtemp(prefix="mlfactory-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "nobody", "nogroup")
        prefix = ["runuser", "-u", "nobody", "--"]
    data, port = home / "data", _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    server = subprocess.Popen(
        [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={home}", "-c", "fsync=off", "-c", "max_connections=50"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg2

        deadline = time.time() + 30
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"PostgreSQL did not start on port {port}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()  # postgres shuts down cleanly on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)
