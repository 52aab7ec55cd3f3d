"""One worker of a study: take trial slots until the study has its trials, record each, write the results.

The study directory (``lightning_logs/tune/<study>/``) holds::

    study.db            the default storage (SQLite), unless --tune.storage names a database
    trials/<number>/    each trial's run record (a fit's, or a cross-validation's); the best
                        --tune.keep complete trials keep it whole, the others keep metrics and config only
    best.yaml           the best trial as a recipe: mlfactory fit --config best.yaml
    summary.json        trials by state, the best trial, the deflated Sharpe ratio and PBO with their inputs

The command line (mlfactory/cli/tune.py) supplies ``run_trial(trial, params, trial_dir) -> TrialOutcome``
and ``recipe(params) -> str``; this module owns the study, its slots, pruned and failed trials, and the
results.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlfactory.atomic import write_json, write_text
from mlfactory.errors import MLFactoryError
from mlfactory.tuning import TuneError
from mlfactory.tuning.overfitting import deflated_sharpe, pbo_cscv, sharpe
from mlfactory.tuning.space import SearchSpace
from mlfactory.tuning.storage import Heartbeat, creation_lock, default_url, open_storage, slot_lock

METRICS = ("log_loss", "balanced_accuracy", "direction_auc", "sharpe")
MAXIMISED = {"balanced_accuracy", "direction_auc", "sharpe"}
# parts of a trial's record that a trial outside the best --tune.keep gives up (metrics and config stay)
HEAVY = ("checkpoints", "bundle", "predictions", "plots", "importance", "predictions.parquet", "folds.parquet",
         "folds.png")


@dataclasses.dataclass
class TuneSettings:
    """What ``--tune.*`` sets (docs/tuning.md).

    Args:
        n_trials: trials of the whole study, over every worker that shares it (complete, pruned and failed
            ones count; a trial failed by a lost heartbeat is retried and counts once).
        timeout: seconds after which this worker starts no new trial; unset, no limit.
        study: the study's name and directory (``lightning_logs/tune/<study>``); unset, the model's name.
            Running the same command again resumes the study.
        storage: a database URL shared by many workers (``postgresql://user:pw@host:5432/db``); unset, a
            SQLite file in the study directory.
        objective: ``val`` scores one fit on the validation split; ``cv`` a purged cross-validation
            (``--cv.*``), pruned per completed split.
        metric: what the study optimises: ``log_loss``, ``balanced_accuracy``, ``direction_auc`` or ``sharpe``
            (annualised, of the predicted signal).
        direction: ``auto`` minimises log loss and maximises the others.
        sampler: ``tpe`` (Optuna's TPE) or ``random``; seeded with ``seed``.
        seed: the sampler's seed. Workers sharing a database add their process id, so they do not all
            propose the same first trials.
        pruner: ``median``, ``hyperband`` or ``none``.
        pruner_startup_trials: trials completed before the median pruner prunes.
        pruner_warmup_steps: epochs, rounds or splits of a trial before it can be pruned.
        report_every: boosting rounds between two reports to the pruner.
        space: a YAML search space replacing the model's default (mlfactory/recipes/search/<model>.yaml).
        keep: complete trials that keep their whole run record (checkpoints, bundle, predictions, plots).
        heartbeat: seconds between a running trial's heartbeats; a trial silent for 3 heartbeats is failed.
        retries: times a trial failed by a lost heartbeat is run again with the same parameters.
    """

    n_trials: int = 20
    timeout: float | None = None
    study: str | None = None
    storage: str | None = None
    objective: Literal["val", "cv"] = "val"
    metric: Literal["log_loss", "balanced_accuracy", "direction_auc", "sharpe"] = "log_loss"
    direction: Literal["auto", "minimize", "maximize"] = "auto"
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 0
    report_every: int = 10
    space: str | None = None
    keep: int = 3
    heartbeat: int = 30
    retries: int = 2

    @property
    def maximise(self) -> bool:
        """True when the study maximises its metric."""
        return self.metric in MAXIMISED if self.direction == "auto" else self.direction == "maximize"

    def check(self) -> None:
        """Refuse settings that cannot make a study."""
        if self.n_trials < 1:
            raise TuneError(f"--tune.n_trials {self.n_trials} runs nothing; pass at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise TuneError(f"--tune.timeout {self.timeout} must be positive seconds, or unset")
        if self.keep < 0:
            raise TuneError(f"--tune.keep {self.keep} must be 0 or more")
        if self.study is not None and (not self.study or "/" in self.study or self.study.startswith(".")):
            raise TuneError(f"--tune.study {self.study!r} must be a plain name (it names a directory)")
        if self.report_every < 1 or self.retries < 0 or self.pruner_startup_trials < 0 or self.pruner_warmup_steps < 0:
            raise TuneError("--tune.report_every must be at least 1, --tune.retries, --tune.pruner_startup_trials "
                            "and --tune.pruner_warmup_steps at least 0")


@dataclasses.dataclass
class TrialOutcome:
    """What a finished trial reports: its metric values and its per-period strategy returns."""

    metrics: dict[str, float | None]
    period_times: np.ndarray  # int64 nanoseconds
    period_returns: np.ndarray


_WAIT = object()
RunTrial = Callable[[Any, dict[str, Any], Path], TrialOutcome]


class Worker:
    """Runs trials of one study until it has ``n_trials`` (or this worker's timeout), then writes the results."""

    def __init__(self, settings: TuneSettings, space: SearchSpace, study_name: str, study_dir: Path,
                 run_trial: RunTrial, recipe: Callable[[dict[str, Any]], str]) -> None:
        self.settings, self.space, self.study_name, self.study_dir = settings, space, study_name, study_dir
        self.run_trial, self.recipe = run_trial, recipe
        self.url = settings.storage or default_url(study_dir)

    # --- the study ------------------------------------------------------------------------------
    def open(self) -> Any:
        """The study, created or loaded; its direction, metric and space must match a loaded one."""
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        if self.settings.storage is None:
            self.study_dir.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction = "maximize" if self.settings.maximise else "minimize"
        with creation_lock(self.url):
            self.storage = open_storage(self.url, self.settings.heartbeat, self.settings.retries)
            try:
                study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self._sampler(),
                                            pruner=self._pruner(), direction=direction, load_if_exists=True)
            except SQLAlchemyError as err:
                raise TuneError(f"cannot open study {self.study_name!r} in {_shown(self.url)}: "
                                f"{str(err).splitlines()[0][:200]}") from None
        if study.direction.name.lower() != direction:
            raise TuneError(f"study {self.study_name!r} already {study.direction.name.lower()}s; this command "
                            f"{direction}s --tune.metric {self.settings.metric}. Use another --tune.study")
        identity = {"metric": self.settings.metric, "objective": self.settings.objective,
                    "space": sorted(self.space.names)}
        stored = study.user_attrs.get("mlfactory")
        if stored is None:
            study.set_user_attr("mlfactory", identity)
            study.set_metric_names([self.settings.metric])
        elif stored != identity:
            raise TuneError(f"study {self.study_name!r} was started with {stored}; this command asks {identity}. "
                            "Resume it with the same --tune.metric, --tune.objective and space, or use another "
                            "--tune.study")
        self._check_choices(study)
        return study

    def _check_choices(self, study: Any) -> None:
        """Refuse a resumed study whose trials drew a categorical parameter from other choices: Optuna would
        fail every new trial ("dynamic value space"). Numeric ranges may change between sessions."""
        import optuna

        wanted = {p.name: tuple(p.choices) for p in self.space.params if p.choices is not None}
        for trial in study.get_trials(deepcopy=False):
            for name, distribution in trial.distributions.items():
                if name not in wanted:
                    continue
                offered = wanted.pop(name)
                if isinstance(distribution, optuna.distributions.CategoricalDistribution) \
                        and tuple(distribution.choices) != offered:
                    raise TuneError(
                        f"study {self.study_name!r} drew {name} from {list(distribution.choices)}, but this space "
                        f"({self.space.source}) offers {list(offered)}; Optuna cannot change a categorical "
                        "parameter's choices within a study. Pass --tune.space with the study's choices, or use "
                        "another --tune.study")
            if not wanted:
                return

    def _sampler(self) -> Any:
        import optuna

        seed = self.settings.seed + (os.getpid() if self.settings.storage else 0)
        if self.settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _pruner(self) -> Any:
        import optuna

        s = self.settings
        if s.pruner == "none":
            return optuna.pruners.NopPruner()
        if s.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=s.pruner_startup_trials, n_warmup_steps=s.pruner_warmup_steps)

    def optimize(self) -> dict[str, Any]:
        """Run trials until the study has ``n_trials`` or the timeout passes; return the summary."""
        import optuna

        with warnings.catch_warnings():
            # ask/tell with our own heartbeat thread (storage.Heartbeat) instead of Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return self._optimize()

    def _optimize(self) -> dict[str, Any]:
        from optuna.storages import fail_stale_trials

        study = self.open()
        started = time.time()
        ran = 0
        while self.settings.timeout is None or time.time() - started < self.settings.timeout:
            with slot_lock(self.storage, self.url, self.study_name):
                fail_stale_trials(study)
                if self.settings.storage is None:
                    self._fail_dead_local(study)
                trial = self._next_trial(study)
            if trial is _WAIT:  # every slot is taken; a running trial may yet fail and come back to be retried
                time.sleep(min(self.settings.heartbeat, 2))
                continue
            if trial is None:
                break
            self._run(study, trial)
            ran += 1
        summary = self.finish(study)
        summary["this_worker"] = {"trials": ran, "host": socket.gethostname(), "pid": os.getpid()}
        return summary

    def _fail_dead_local(self, study: Any) -> None:
        """Fail (and retry) running trials of a process of this host that is gone, without waiting for its heartbeat.

        Only for the default storage, a file on this machine: there host and process id name the worker.
        """
        from optuna.trial import TrialState

        from mlfactory.atomic import process_alive

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and not process_alive(pid):
                if self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    self._retry(study, self.storage.get_trial(trial._trial_id))

    def _retry(self, study: Any, frozen: Any) -> None:
        """Enqueue a failed trial again with its parameters (at most ``retries`` times), as a lost heartbeat does."""
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        if self.settings.retries > 0:
            RetryHeartbeatStaleTrialCallback(max_retry=self.settings.retries)(study, frozen)

    def _next_trial(self, study: Any) -> Any:
        """A new trial (or a waiting retry); ``_WAIT`` while all slots are taken but trials still run; None when done.

        A worker stays until no trial runs, so that the trial of a worker that dies is retried (its
        heartbeat stops) and the last worker's summary covers every trial.
        """
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        # a trial run again (a retry's retry_history lists it) counts once, through its retry
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
        used = sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and used >= self.settings.n_trials:
            return _WAIT if any(t.state == TrialState.RUNNING for t in trials) else None
        return study.ask()

    # --- one trial ------------------------------------------------------------------------------
    def _run(self, study: Any, trial: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        trial_dir = self.study_dir / "trials" / str(trial.number)
        trial.set_user_attr("run_dir", str(trial_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        with Heartbeat(self.storage, trial._trial_id, self.settings.heartbeat):
            try:
                params = self.space.sample(trial)
                outcome = self.run_trial(trial, params, trial_dir)
            except optuna.TrialPruned as err:
                _mark(trial_dir, "pruned", str(err))
                study.tell(trial, state=TrialState.PRUNED)
                print(f"trial {trial.number}: pruned ({err})", file=sys.stderr)
                self._trim(study)
                return
            except BaseException as err:
                error = f"{type(err).__name__}: {err}"
                trial.set_user_attr("error", error[:2000])
                frozen = study.tell(trial, state=TrialState.FAIL)
                print(f"trial {trial.number}: failed ({error.splitlines()[0] if error else ''})", file=sys.stderr)
                if not isinstance(err, Exception):  # interrupted: run it again when the study resumes
                    self._retry(study, frozen)
                    raise
                if isinstance(err, MLFactoryError) and not _any_complete(study):
                    raise  # the configuration itself cannot run: stop this worker with its error
                return
        value = outcome.metrics.get(self.settings.metric)
        if value is None or not math.isfinite(value):
            trial.set_user_attr("error", f"{self.settings.metric} is undefined for this trial ({value})")
            study.tell(trial, state=TrialState.FAIL)
            print(f"trial {trial.number}: failed ({self.settings.metric} undefined)", file=sys.stderr)
            return
        trial.set_user_attr("metrics", {k: v for k, v in outcome.metrics.items() if v is None or math.isfinite(v)})
        trial.set_user_attr("period_sharpe", _finite(sharpe(outcome.period_returns)))
        trial.set_user_attr("period_times", [int(t) for t in outcome.period_times])
        trial.set_user_attr("period_returns", [float(f"{r:.6g}") for r in outcome.period_returns])
        if self.settings.objective == "cv":  # a fit's run record puts its own val metrics in the HPARAMS tab
            _log_hparams(trial_dir, params, self.settings.metric, value)
        study.tell(trial, value)
        print(f"trial {trial.number}: {self.settings.metric} {value:.4f}  {params}", file=sys.stderr)
        self._trim(study)

    def _trim(self, study: Any) -> None:
        """Keep the whole record of the best ``keep`` complete trials; the others keep metrics and config.

        Only finished trials are trimmed: a record whose trial is still running (here or in another
        worker sharing the directory) is left alone until the study knows its result.
        """
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value,
                          reverse=self.settings.maximise)
        keep = {t.number for t in complete[: self.settings.keep]}
        finished = {t.number for t in trials if t.state.is_finished()}
        for directory in (self.study_dir / "trials").glob("*"):
            if directory.name.isdigit() and int(directory.name) in finished - keep:
                _trim_record(directory)

    # --- results ---------------------------------------------------------------------------------
    def finish(self, study: Any) -> dict[str, Any]:
        """Write ``summary.json`` and ``best.yaml`` (when a trial completed); return the summary."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        summary: dict[str, Any] = {
            "study": self.study_name, "storage": _shown(self.url), "metric": self.settings.metric,
            "direction": "maximize" if self.settings.maximise else "minimize", "objective": self.settings.objective,
            "space": {p.name: p.describe() for p in self.space.params}, "space_source": self.space.source,
            "n_trials": len(trials), "states": states, "best": None,
        }
        self.study_dir.mkdir(parents=True, exist_ok=True)
        if complete:
            best = study.best_trial
            summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                               "metrics": best.user_attrs.get("metrics"), "run_dir": best.user_attrs.get("run_dir")}
            summary["deflated_sharpe"] = deflated_sharpe(
                np.asarray(best.user_attrs.get("period_returns") or []),
                [t.user_attrs.get("period_sharpe") for t in complete])
            summary["pbo"] = _pbo(complete)
            write_text(self.study_dir / "best.yaml", self.recipe(best.params))
        write_json(self.study_dir / "summary.json", summary)
        return summary


def _pbo(complete: list[Any]) -> dict[str, Any]:
    """PBO over the complete trials' per-period returns, on the periods every one of them has."""
    series = [dict(zip(t.user_attrs.get("period_times") or [], t.user_attrs.get("period_returns") or []))
              for t in complete]
    if len(series) < 2:
        return {"pbo": None, "reason": "needs at least 2 complete trials"}
    common = sorted(set.intersection(*(set(s) for s in series)))
    n_blocks = next((s for s in (8, 6, 4, 2) if len(common) >= 4 * s), None)
    if n_blocks is None:
        return {"pbo": None, "reason": f"{len(common)} periods common to every trial are too few (at least 8)"}
    matrix = np.asarray([[s[t] for s in series] for t in common], dtype=np.float64)
    result = pbo_cscv(matrix, n_blocks=n_blocks)
    result["trials"] = [t.number for t in complete]
    return result


def _log_hparams(trial_dir: Path, params: dict[str, Any], metric: str, value: float) -> None:
    """A cv trial's parameters and score for TensorBoard's HPARAMS tab (``tensorboard --logdir`` the trials)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(trial_dir.parent), name="", version=trial_dir.name,
                               default_hp_metric=False)
    logger.log_hyperparams(params, {f"tune/{metric}": value})
    logger.finalize("success")


def _mark(trial_dir: Path, state: str, reason: str) -> None:
    """Say in the trial's ``status.json`` that the study ended it (``pruned``), keeping who ran it."""
    path = trial_dir / "status.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        status = {}
    status.update({"status": state, "reason": reason, "pid": os.getpid(), "host": socket.gethostname()})
    status.pop("traceback", None)
    status.pop("error", None)
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, status)


def _trim_record(directory: Path) -> None:
    """Remove the heavy parts of a trial's record (and of its cv splits)."""
    for root in (directory, *sorted((directory / "splits").glob("*"))):
        for name in HEAVY:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink(missing_ok=True)


def _any_complete(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _shown(url: str) -> str:
    from mlfactory.tuning.storage import redacted

    return redacted(url)
