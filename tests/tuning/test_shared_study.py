"""Two worker processes share one study in a real PostgreSQL server; a worker killed mid-trial loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

N_TRIALS = 4
PASSWORD = "pw-never-written"


def _statuses(trials_dir: Path) -> list[dict]:
    found = []
    for path in trials_dir.glob("*/status.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass  # being written
    return found


def test_two_workers_share_a_postgres_study_and_a_killed_workers_trial_is_retried(
        postgres_url: str, sample_dir: Path, tmp_path: Path, tune_args) -> None:
    import optuna
    from optuna.trial import TrialState

    # the server trusts loopback, so any password works: it must reach no file of the study
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    args = tune_args(sample_dir, tmp_path, "--tune.n_trials", str(N_TRIALS), "--tune.storage", with_password,
                     "--tune.study", "shared", "--tune.heartbeat", "1", "--tune.pruner", "none")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a_log = tmp_path / "worker-a.log"  # a file, not a pipe nobody reads: a full pipe would stall worker a
    with open(a_log, "w") as a_err:
        a = subprocess.Popen([sys.executable, "-m", "mlfactory.cli", *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=a_err)
    b = subprocess.Popen([sys.executable, "-m", "mlfactory.cli", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    trials_dir = tmp_path / "lightning_logs" / "tune" / "shared" / "trials"
    try:
        _kill_a_mid_trial(a, a_log, trials_dir)
        _, err = b.communicate(timeout=300)
    finally:
        b.kill()
        b.wait()
    assert b.returncode == 0, err[-2000:]
    leaked = [p for p in (tmp_path / "lightning_logs").rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert not leaked, leaked

    trials = optuna.load_study(study_name="shared", storage=postgres_url.replace(
        "postgresql://", "postgresql+psycopg2://")).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == N_TRIALS and len(failed) == 1 and len(trials) == N_TRIALS + 1  # none lost, none extra
    assert failed[0].user_attrs["pid"] == a.pid  # a's trial, failed by its stopped heartbeat (b found it stale)
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retry.params == failed[0].params and retry.user_attrs["pid"] == b.pid
    assert {t.user_attrs["pid"] for t in trials} == {a.pid, b.pid}  # both workers ran trials of the one study
    assert len({tuple(sorted(t.params.items())) for t in complete}) == N_TRIALS  # no trial run twice
    for trial in complete:  # each complete trial is one complete run record
        assert json.loads((Path(trial.user_attrs["run_dir"]) / "status.json").read_text())["status"] == "complete"


def _kill_a_mid_trial(a: subprocess.Popen, a_log: Path, trials_dir: Path) -> None:
    try:
        deadline = time.time() + 240
        while time.time() < deadline and a.poll() is None:  # kill a mid-trial, once the study has a finished trial
            statuses = _statuses(trials_dir)
            if any(s.get("status") == "complete" for s in statuses) and any(
                    s.get("pid") == a.pid and s.get("status") == "running" for s in statuses):
                break
            time.sleep(0.05)
        assert a.poll() is None, f"worker a ended before it could be killed mid-trial: {a_log.read_text()[-3000:]}"
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
