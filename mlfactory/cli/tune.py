"""``mlfactory tune``: everything ``fit`` takes plus ``--tune.*`` (and ``--cv.*``); an Optuna study (docs/tuning.md).

The command line is parsed by the same LightningCLI as ``fit``. Every trial instantiates the parsed
config again with the trial's parameters, so each trial is an ordinary fit (``--tune.objective val``)
or an ordinary cross-validation (``cv``), with its run record under
``lightning_logs/tune/<study>/trials/<number>/``. The data are read once and shared by every trial.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml

from mlfactory.cli.lightning_cli import LOG_ROOT, FactoryCLI, run_as_fit
from mlfactory.errors import ConfigError
from mlfactory.tuning.overfitting import period_returns
from mlfactory.tuning.pruning import RoundReporter, attach_round_pruning, epoch_callbacks
from mlfactory.tuning.space import SearchSpace
from mlfactory.tuning.storage import redacted
from mlfactory.tuning.study import TrialOutcome, TuneSettings, Worker
from mlfactory.validation.runner import PROB_COLUMNS, CVSettings, run_cv

# metric -> key in a split's scores / the cv summary
CV_KEYS = {"log_loss": "log_loss", "balanced_accuracy": "balanced_accuracy", "direction_auc": "direction_auc",
           "sharpe": "sharpe_annualised"}


class TuneCLI(FactoryCLI):
    """``FactoryCLI`` whose ``fit`` runs a study: one fit or cross-validation per trial."""

    shown_as = "tune"
    headline = ("Search a model's hyper-parameters with Optuna: one fit (or cross-validation) per trial (--tune.n_trials, "
                "--tune.metric,\n--tune.storage ..., listed at the end); the study goes to lightning_logs/tune/<study>/.")

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_class_arguments(TuneSettings, "tune")
        parser.add_class_arguments(CVSettings, "cv")

    def _run_subcommand(self, subcommand: str) -> None:
        config = self.config[subcommand]
        self.settings = TuneSettings(**config["tune"].as_dict())
        self.settings.check()
        self.cv_settings = CVSettings(**config["cv"].as_dict())
        if self.settings.objective == "cv" and hasattr(self.cv_settings, "check"):
            self.cv_settings.check()  # before the study opens: a bad --cv.* is one line, not failed trials
        if config.get("ckpt_path"):
            raise ConfigError("mlfactory tune fits every trial from scratch; drop --ckpt_path")
        if self._get(self.config, "trainer", default={}).get("logger") not in (None, True):
            raise ConfigError("mlfactory tune writes each trial's record to lightning_logs/tune/<study>/trials/<n>/; "
                              "drop --trainer.logger")
        name = getattr(self.model, "registry_name", "") or type(self.model).__name__.lower()
        space = SearchSpace.from_file(self.settings.space) if self.settings.space else SearchSpace.default_for(name)
        space.check(type(self.model))  # before the first trial
        study = self.settings.study or name
        root = Path(self._get(self.config, "trainer", default={}).get("default_root_dir") or ".")
        self.subcommand_name = subcommand
        self.sign = -1.0 if self.settings.maximise else 1.0  # epochs and rounds report a loss
        worker = Worker(self.settings, space, study, root / LOG_ROOT / "tune" / study, self._trial, self._recipe)
        summary = worker.optimize()
        _print_summary(summary, root / LOG_ROOT / "tune" / study)

    # --- one trial ----------------------------------------------------------------------------
    def _trial(self, trial: Any, params: dict[str, Any], trial_dir: Path) -> TrialOutcome:
        config = self._config_with(params)
        if self.settings.objective == "cv":
            return self._cv_trial(trial, config, trial_dir)
        model = self._instantiate(config)
        callbacks: list[Any] = []
        if self.settings.pruner == "none":
            pass  # nothing to report: each report is a write to the study's storage
        elif getattr(model, "fits_once", False):
            attach_round_pruning(model, RoundReporter(trial, self.sign, self.settings.report_every))
        else:
            callbacks = epoch_callbacks(trial, self.settings.metric, self.sign)
        trainer = self._trainer(config, trial_dir, callbacks)
        trainer.fit(model, datamodule=self.datamodule)
        report = json.loads((trial_dir / "metrics" / "evaluation_metrics.json").read_text())["val"]
        metrics = {name: report.get(name) for name in ("log_loss", "balanced_accuracy", "direction_auc")}
        metrics["sharpe"] = (report.get("trading") or {}).get("sharpe_annualised")
        with np.load(trial_dir / "predictions" / "val_predictions.npz") as saved:
            rows, probs = saved["row"], saved["probabilities"]
        split = self.datamodule.container.split("val")
        if split.fwd_returns is None:
            times, returns = np.zeros(0, np.int64), np.zeros(0)
        else:
            times, returns = period_returns(probs, split.fwd_returns[rows], split.timestamps[rows],
                                            self.datamodule.horizon)
        return TrialOutcome(metrics, times, returns)

    def _cv_trial(self, trial: Any, config: Any, trial_dir: Path) -> TrialOutcome:
        import optuna
        import pandas as pd

        key = CV_KEYS[self.settings.metric]
        values: list[float] = []

        def split_done(index: int, scores: dict[str, Any]) -> None:
            """run_cv's ``on_split_end``: report the running mean of the finished splits' test metric; prune."""
            value = scores.get(key)
            if value is None or not np.isfinite(value):
                return
            values.append(float(value))
            trial.report(float(np.mean(values)), len(values))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {len(values)} split(s), mean {self.settings.metric} "
                                         f"{np.mean(values):.4f}")

        def make_model() -> L.LightningModule:
            return self._instantiate(config)  # seeded first, as cv and fit seed before building the model

        def make_trainer(split_dir: Path) -> L.Trainer:
            return self._trainer(config, split_dir, [])

        summary = run_cv(make_model, self.datamodule, make_trainer, trial_dir, self.cv_settings,
                         on_split_end=split_done)
        metrics = {name: (summary["across_splits"].get(k) or {}).get("mean") for name, k in CV_KEYS.items()}
        table = pd.read_parquet(trial_dir / "predictions.parquet")
        times, returns = np.zeros(0, np.int64), np.zeros(0)
        if "fwd_return" in table:
            probs = table[PROB_COLUMNS].to_numpy()
            # every path's per-period returns, averaged over the paths that hold each period
            series = []
            for _, frame in table.groupby("path", sort=True):
                part = probs[frame.index.to_numpy()]
                t, r = period_returns(part, frame["fwd_return"].to_numpy(), frame["datetime"].to_numpy(),
                                      self.datamodule.horizon)
                series.append(pd.Series(r, index=t))
            mean = pd.concat(series, axis=1).mean(axis=1).sort_index()
            times, returns = mean.index.to_numpy(dtype=np.int64), mean.to_numpy(dtype=np.float64)
        return TrialOutcome(metrics, times, returns)

    # --- the trial's config, model and trainer ---------------------------------------------------
    def _config_with(self, params: dict[str, Any]) -> Any:
        config = self.config.clone()
        for name, value in params.items():
            config[f"{self.subcommand_name}.model.init_args.{name}"] = value
        # LightningCLI saves a model's hyper-parameters from `config_dump`, not from its arguments
        if not hasattr(self, "_parsed_dump"):
            self._parsed_dump = copy.deepcopy(self.config_dump)
        dump = copy.deepcopy(self._parsed_dump)
        if isinstance(dump.get("model"), dict) and "init_args" in dump["model"]:
            dump["model"]["init_args"].update(params)
        self.config_dump = dump
        return config

    def _instantiate(self, config: Any, seed: bool = True) -> L.LightningModule:
        value = config[self.subcommand_name].get("seed_everything")
        if seed and isinstance(value, int) and not isinstance(value, bool):
            L.seed_everything(value, verbose=False)  # as fit seeds before it builds the model
        self._fresh = self.parser.instantiate_classes(config)
        return self._fresh[self.subcommand_name]["model"]

    def _trainer(self, config: Any, run_dir: Path, callbacks: list[Any]) -> L.Trainer:
        """An ordinary Trainer of the trial's config whose run record goes to ``run_dir``."""
        self.config_init = self._fresh
        self.resume_dir = run_dir
        record = self._fresh[self.subcommand_name]["record"]
        record.importance_samples, record.plots = 0, False  # a trial records numbers: no importance, no figures
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": list(callbacks)}
        saved = config.clone()  # config.yaml in the run directory: the trial's own, without the storage's password
        key = f"{self.subcommand_name}.tune.storage"
        if saved.get(key):
            saved[key] = redacted(saved[key])
        parsed, self.config = self.config, saved
        try:
            trainer = self.instantiate_trainer()
        finally:
            self.config = parsed
        return trainer

    def _recipe(self, params: dict[str, Any]) -> str:
        """``best.yaml``: the parsed config with the best trial's parameters, as ``fit --config`` reads it."""
        config = self._config_with(params)[self.subcommand_name]
        text = self._parser(self.subcommand_name).dump(config, skip_none=False, skip_validation=True)
        loaded = yaml.safe_load(text)
        for key in ("tune", "cv", "config", "ckpt_path"):
            loaded.pop(key, None)
        cv = ""
        if self.settings.objective == "cv":
            options = " ".join(f"--cv.{k} {v}" for k, v in config["cv"].as_dict().items() if v is not None)
            cv = f"# Its score was a cross-validation: mlfactory cv --config best.yaml {options}\n"
        header = (f"# The best trial of a study (mlfactory tune): {', '.join(f'{k}={v!r}' for k, v in params.items())}\n"
                  "# Reproduce it: mlfactory fit --config best.yaml\n" + cv)
        return header + yaml.safe_dump(loaded, sort_keys=False)


def _print_summary(summary: dict[str, Any], study_dir: Path) -> None:
    states = ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n)
    print(f"study {summary['study']}: {summary['n_trials']} trials ({states})", file=sys.stderr)
    best = summary.get("best")
    if best:
        print(f"best trial {best['number']}: {summary['metric']} {best['value']:.4f} {best['params']}", file=sys.stderr)
        dsr, pbo = summary["deflated_sharpe"], summary["pbo"]
        if dsr.get("dsr") is not None:
            print(f"deflated Sharpe ratio {dsr['dsr']:.3f} (best per-period Sharpe {dsr['sharpe']:.4f} against "
                  f"{dsr['expected_max_sharpe']:.4f} expected from {dsr['n_trials']} skill-less trials)", file=sys.stderr)
        if pbo.get("pbo") is not None:
            print(f"probability of backtest overfitting {pbo['pbo']:.3f} (CSCV, {pbo['n_blocks']} blocks)",
                  file=sys.stderr)
        print(f"best recipe: {study_dir / 'best.yaml'}", file=sys.stderr)
    print(f"study: {study_dir}", file=sys.stderr)


def tune_command(argv: list[str]) -> int:
    """Run ``mlfactory tune ARGS``: ``fit``'s options plus ``--tune.*`` and ``--cv.*``."""
    return run_as_fit(TuneCLI, argv)
