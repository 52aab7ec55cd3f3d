"""LightningCLI for mlfactory: registry short names, checkpoint-aware commands, one run directory per run."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from mlfactory.atomic import process_alive
from mlfactory.callbacks.run_record import LOG_ROOT, RunRecord, new_run_id
from mlfactory.cli.console import (
    FIT_HEADLINE,
    HelpFormatter,
    console,
    describe_model_options,
    pop_flag,
    subcommand_kwargs,
    usage_message,
)
from mlfactory.cli.progress import FactoryProgressBar, FitAnnouncement
from mlfactory.data.datamodule import FactoryDataModule
from mlfactory.errors import ConfigError, RunError
from mlfactory.models.base import FactoryModule
from mlfactory.registry import class_path_for, list_models, registry_name_of

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
"""The recipes shipped with the package; ``configs/`` in a clone is a link to this folder."""
SHARED_CONFIG = RECIPES / "training.yaml"
"""The training defaults, applied to every trainer command before any ``--config``, from any directory."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# class paths a run's config.yaml or a checkpoint may name besides registered models
TRUSTED_PREFIXES = ("lightning.pytorch.",)


def recipe_names() -> list[str]:
    """The packaged recipes, by the name ``--config`` takes (``lstm``, ``xgboost``, ...)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml") if p != SHARED_CONFIG)


def find_recipe(value: str) -> Path | None:
    """The file a ``--config`` value names, or None if it is no file name (inline YAML).

    An existing file wins. Otherwise a packaged recipe by name (``lstm``, ``lstm.yaml``,
    ``search/lstm``), or by a clone's path to it (``configs/lstm.yaml``, from any directory). A value
    that looks like a file name (``.yaml``, ``.yml``, ``.json``) but is none of these is a ConfigError.
    """
    path = Path(value)
    if path.is_file():
        return path
    candidates = [RECIPES / value, RECIPES / f"{value}.yaml"]
    if path.parent.name == "configs":  # configs/lstm.yaml typed outside a clone
        candidates.append(RECIPES / path.name)
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve().is_relative_to(RECIPES.resolve()):
            return candidate
    if path.suffix in (".yaml", ".yml", ".json") or value.isidentifier():
        raise ConfigError(
            f"--config {value}: no such file, and not a packaged recipe. Pass a YAML file, or one of: "
            f"{', '.join(recipe_names())}"
        )
    return None


class FactoryCLI(LightningCLI):
    """LightningCLI over every registered model and :class:`FactoryDataModule`.

    Adds the checkpoint and early-stopping callbacks as configurable groups (``--checkpoint.*``,
    ``--early_stopping.*``), the run record, the progress bar, and a TensorBoard logger whose
    directory is the run directory ``lightning_logs/<model>/<run_id>`` (for validate/test/predict of a
    run's checkpoint, ``<run>/evaluations/<command>-<run_id>``). ``--verbose`` in ``args`` shows
    Lightning's start-up lines, the model summary and library warnings, which are hidden otherwise.
    """

    shown_as: ClassVar[str] = "fit"
    """The command's name in its usage line: ``cv`` and ``tune`` run as ``fit`` with a group of their own."""
    headline: ClassVar[str] = FIT_HEADLINE
    """The first line of the command's ``--help``."""

    def __init__(self, args: list[str], run_dir: Path | None = None) -> None:
        self.resume_dir = run_dir
        args, self.verbose = pop_flag(list(args), "--verbose")
        recipes = recipe_names()
        parser_kwargs: dict[str, Any] = {"exit_on_error": False, "formatter_class": HelpFormatter}
        for command in self.subcommands():
            parser_kwargs[command] = {"default_config_files": [str(SHARED_CONFIG)], "exit_on_error": False,
                                      **subcommand_kwargs(command, recipes, self.shown_as, self.headline)}
        with console(self.verbose):
            super().__init__(
                model_class=FactoryModule,
                datamodule_class=FactoryDataModule,
                subclass_mode_model=True,
                # the run record is the `record` callback group (--record.importance_share ...): one per trainer
                seed_everything_default=42,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=parser_kwargs,
                auto_configure_optimizers=False,
                args=args,
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse as LightningCLI does; a usage error is one line on stderr and exit code 2."""
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as err:
            command = args[0] if args and args[0] in self.subcommands() else "fit"
            options = [o for a in self._parser(command)._actions for o in a.option_strings]
            message = usage_message(str(err), list(args or []), options, self.shown_as)
            print(f"mlfactory: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        describe_model_options(parser)
        parser.set_defaults({"trainer.enable_model_summary": self.verbose})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_loss",
                "checkpoint.mode": "min",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
            }
        )
        parser.add_lightning_class_args(RunRecord, "record")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val_loss", "early_stopping.mode": "min",
                             "early_stopping.patience": 5})

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):  # unless the user chose a logger: the run directory
            run = self.resume_dir or self._evaluation_dir(config) or self._new_run_dir(config)
            kwargs["logger"] = TensorBoardLogger(save_dir=str(run.parent.parent), name=run.parent.name, version=run.name,
                                                 default_hp_metric=False)  # RunRecord logs the real val metrics
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks = [*callbacks, FactoryProgressBar()]
        kwargs["callbacks"] = [*callbacks, FitAnnouncement()]
        return super().instantiate_trainer(**kwargs)

    def _new_run_dir(self, config: dict[str, Any]) -> Path:
        name = getattr(self.model, "registry_name", "") or type(self.model).__name__.lower()
        return Path(config.get("default_root_dir") or ".") / LOG_ROOT / name / new_run_id()

    def _evaluation_dir(self, config: dict[str, Any]) -> Path | None:
        """``<run>/evaluations/<command>-<run_id>`` for validate/test/predict of a checkpoint inside a run.

        None for a fit, for a checkpoint outside a run directory, and when ``--trainer.default_root_dir``
        says where runs go (then the evaluation is a run of its own there, as before).
        """
        if self.subcommand == "fit" or config.get("default_root_dir"):
            return None
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        run = run_of_checkpoint(ckpt_path) if ckpt_path else None
        return None if run is None else run / "evaluations" / f"{self.subcommand}-{new_run_id()}"

    def _parse_ckpt_path(self) -> None:
        # validate/test/predict: prepare_args already put the checkpoint's model (checked against the
        # registry) and data settings on the command line. Lightning's own pass would apply the bare
        # hyper-parameters of a checkpoint written by a plain Trainer (no `_class_path`) to the base
        # class and fail; a fit with --ckpt_path keeps Lightning's behaviour.
        if self.config.get("subcommand") == "fit":
            super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        max_epochs = self._get(self.config, "trainer", default={}).get("max_epochs")
        if isinstance(max_epochs, int) and (max_epochs < -1 or max_epochs == 0):
            raise ConfigError(
                f"--trainer.max_epochs {max_epochs} trains nothing; pass a positive number of epochs, "
                "or -1 for no limit (early stopping or --trainer.max_steps then end the fit)"
            )

    def after_instantiate_classes(self) -> None:
        if not getattr(self.model, "fits_once", False):
            return
        if self.subcommand == "fit" and self.trainer.max_epochs is not None and self.trainer.max_epochs < 1:
            raise ConfigError(
                f"{self.model.registry_name} is fitted once by its library, so --trainer.max_epochs "
                f"{self.trainer.max_epochs} does not apply; drop it (epochs count in the neural recipes only)"
            )
        if self.trainer.gradient_clip_val:
            raise ConfigError(
                f"{self.model.registry_name} takes no gradient steps, so --trainer.gradient_clip_val "
                f"{self.trainer.gradient_clip_val} does not apply; drop it (set it in the neural recipes only)"
            )
        if self.trainer.world_size > 1:
            raise ConfigError(
                f"{self.model.registry_name} is fitted by its library in one process and cannot run under "
                f"{type(self.trainer.strategy).__name__} with {self.trainer.world_size} processes. Drop "
                "--trainer.strategy/--trainer.devices/--trainer.num_nodes (the library uses every core by itself)."
            )

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except OSError as err:
            if err.errno not in DISK_FULL:
                raise
            record = next((c for c in self.trainer.callbacks if isinstance(c, RunRecord)), None)
            where = record.run_dir if record is not None and record.run_dir is not None else "the run directory"
            raise RunError(
                f"the disk is full: cannot write to {where} ({err.strerror}); the run is marked failed "
                "(or, if even that could not be written, reads as dead once this process ends). Free space, "
                "then start the run again or `mlfactory fit --resume` it"
            ) from None

    def _report(self) -> None:
        # the run directory RunRecord resolved on every rank (reading trainer.log_dir here would
        # broadcast after the other ranks may have finished)
        record = next(c for c in self.trainer.callbacks if isinstance(c, RunRecord))
        if not self.trainer.is_global_zero:
            return
        scores_file = record.run_dir / "metrics" / "evaluation_metrics.json"
        if scores_file.is_file():
            scores = json.loads(scores_file.read_text())
            summary = ", ".join(
                f"{split} balanced accuracy {report['balanced_accuracy']:.3f} (n={report['n_samples']})"
                for split, report in scores.items()
            )
            print(f"{summary}; chance is 0.333", file=sys.stderr)
        print(f"run: {record.run_dir}", file=sys.stderr)

    after_fit = after_validate = after_test = after_predict = _report


def run(argv: list[str]) -> int:
    """Run one trainer command (``fit``, ``validate``, ``test``, ``predict``)."""
    args, run_dir = resume_args(argv)
    args = prepare_args(args)
    _quiet_disk_full_in_threads()
    with warnings.catch_warnings():
        # the arguments are passed explicitly (rewritten); sys.argv stays as it is, because DDP's
        # launcher starts the other ranks by re-running it
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        try:
            FactoryCLI(args, run_dir=run_dir)
        except OSError as err:  # before the run started, e.g. creating its directory
            if err.errno not in DISK_FULL:
                raise
            raise RunError(f"the disk is full: {err.strerror} ({err.filename or 'writing the run'}); free space "
                           "or point --trainer.default_root_dir at another disk") from None
    return 0


def run_as_fit(cli_class: type, argv: list[str]) -> int:
    """Run a command that takes every ``fit`` option plus its own group (``cv``, ``tune``) with ``cli_class``."""
    args = prepare_args(["fit", *argv])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli_class(args)
    return 0


def _quiet_disk_full_in_threads() -> None:
    """Keep library writer threads (TensorBoard's event writer) from printing a traceback on a full disk.

    The main thread meets the same full disk and reports it once, in one line; other thread errors
    are printed as before. Installed once per process.
    """
    previous = threading.excepthook
    if getattr(previous, "quiet_disk_full", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL:
            return
        previous(args)

    hook.quiet_disk_full = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def run_of_checkpoint(ckpt_path: str) -> Path | None:
    """The run directory holding ``RUN/checkpoints/<file>.ckpt``, or None for a checkpoint kept elsewhere."""
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.parent.name == "checkpoints" and ((run / "status.json").is_file() or (run / "config.yaml").is_file()):
        return run
    return None


def resume_args(argv: list[str]) -> tuple[list[str], Path | None]:
    """``fit --resume RUN_DIR``: the run's own config and its last checkpoint, into the same directory.

    Options after ``--resume`` still apply (e.g. a larger ``--trainer.max_epochs``).
    """
    value = _option(argv, "--resume")
    if value is None:
        return argv, None
    if argv[0] != "fit":
        raise ConfigError("--resume continues a fit: mlfactory fit --resume lightning_logs/<model>/<run_id>")
    run = Path(value)
    _refuse_live_run(run)
    config, last = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    if not config.is_file() or not last.is_file():
        raise RunError(
            f"cannot resume {run}: it needs config.yaml and checkpoints/last.ckpt (a run stopped before its "
            "first epoch ended has no checkpoint; start it again instead)"
        )
    _check_resume_config(config)
    return ["fit", "--config", str(config), *_without_option(argv[1:], "--resume"), "--ckpt_path", str(last)], run


def prepare_args(argv: list[str]) -> list[str]:
    """Rewrite registry short names into class paths, and fill ``--model``/``--data`` from ``--ckpt_path``.

    jsonargparse resolves ``--model NAME`` only against imported class names, and validate/test/predict
    demand ``--model`` before the checkpoint is read; both are settled here, before parsing.
    """
    args = model_before_its_options(list(argv))
    names_model = False
    for i, token in enumerate(args):
        if token in ("--model", "--model.help") and i + 1 < len(args):
            args[i + 1] = _class_path_value(args[i + 1])
            names_model = names_model or token == "--model"
        elif token.startswith("--model="):
            args[i] = "--model=" + _class_path_value(token.split("=", 1)[1])
            names_model = True
        elif token in ("--config", "-c") and i + 1 < len(args):
            args[i + 1], has_model = _resolve_config(args[i + 1])
            names_model = names_model or has_model
    ckpt_path = _option(args, "--ckpt_path")
    if args and ckpt_path is not None:
        checkpoint = _load_checkpoint(ckpt_path)  # fit too: a damaged file fails here, in one line
        _check_checkpoint_classes(ckpt_path, checkpoint)
        if args[0] != "fit":
            model_args, data_args = _args_from_checkpoint(ckpt_path, checkpoint)
            args[1:1] = data_args if names_model else model_args + data_args
    return args


def model_before_its_options(args: list[str]) -> list[str]:
    """Move ``--model NAME`` before the first ``--model.x`` option, so ``--model.x`` may come first.

    jsonargparse applies an option given before the model is chosen to the base class, which rejects it.
    A ``--config`` between them is left alone (moving the model before it would change what wins).
    """
    firsts = [i for i, token in enumerate(args) if token.startswith("--model.") and token.split("=")[0] != "--model.help"]
    named = [i for i, token in enumerate(args) if token == "--model" and i + 1 < len(args)]
    if not firsts or len(named) != 1 or named[0] < firsts[0]:
        return args
    start, at = firsts[0], named[0]
    if any(token in ("--config", "-c") or token.startswith("--config=") for token in args[start:at]):
        return args
    pair = args[at:at + 2]
    rest = args[:at] + args[at + 2:]
    return rest[:start] + pair + rest[start:]


def _class_path_value(value: str) -> str:
    if value.startswith("{") or value.startswith("-"):
        return value  # an inline dict or a flag: leave it to jsonargparse
    return class_path_for(value)


def _resolve_config(value: str) -> tuple[str, bool]:
    """A packaged recipe's path for its name; a recipe's ``model: lstm`` (or ``class_path: lstm``) as the class path.

    Returns the YAML text if the model name was rewritten, else the file's path, and whether it names a model.
    """
    path = find_recipe(value)
    if path is None:
        return value, False
    value = str(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
    model = config.get("model") if isinstance(config, dict) else None
    if model is None:
        return value, False
    if isinstance(model, str):
        config["model"] = class_path_for(model)
    elif isinstance(model, dict) and isinstance(model.get("class_path"), str):
        model["class_path"] = class_path_for(model["class_path"])
    else:
        return value, True
    return yaml.safe_dump(config, sort_keys=False), True


def _option(args: list[str], name: str) -> str | None:
    for i, token in enumerate(args):
        if token == name and i + 1 < len(args):
            return args[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def _without_option(args: list[str], name: str) -> list[str]:
    """``args`` less ``name VALUE`` and ``name=VALUE``."""
    kept: list[str] = []
    skip_next = False
    for token in args:
        if skip_next:
            skip_next = False
        elif token == name:
            skip_next = True
        elif not token.startswith(name + "="):
            kept.append(token)
    return kept


def _refuse_live_run(run: Path) -> None:
    """Refuse to resume a run whose process is still alive on this host: two fits would share one directory.

    A run from another host cannot be checked and is resumed; so is one whose process is gone (dead).
    """
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return  # a DDP rank started by rank 0, which checked already and is now the live process
    try:
        status = json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return  # no readable status: nothing says the run is alive
    if not isinstance(status, dict) or status.get("status") != "running":
        return
    pid = status.get("pid")
    if isinstance(pid, int) and status.get("host") == socket.gethostname() and process_alive(pid):
        raise RunError(
            f"cannot resume {run}: its status.json says it is running as process {status['pid']} on "
            f"{status.get('host')}. Wait for it to end or stop it, then resume"
        )


def _check_resume_config(config: Path) -> None:
    """A run's config.yaml names the model class that will be imported: only registered models pass."""
    try:
        loaded = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RunError(
            f"cannot resume: {config} is not readable YAML ({type(err).__name__}); start the run again"
        ) from None
    model = loaded.get("model") if isinstance(loaded, dict) else None
    class_path = model.get("class_path") if isinstance(model, dict) else model
    if not isinstance(class_path, str) or registry_name_of(class_path) is None:
        raise RunError(
            f"cannot resume: {config} names model {class_path!r}, which is not a registered mlfactory model; "
            f"refusing to import it. {_registered_hint()}"
        )
    _check_class_paths(loaded, str(config))


def _check_class_paths(value: Any, source: str) -> None:
    """Every ``class_path`` inside ``value`` must be a registered model or one of Lightning's classes.

    Config files and checkpoints from elsewhere are input: jsonargparse imports whatever a class path
    names, so an unchecked one could run any importable callable.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("class_path", "_class_path", "_instantiator") and isinstance(item, str):
                if registry_name_of(item) is None and not item.startswith(TRUSTED_PREFIXES):
                    raise RunError(
                        f"{source} names class {item!r}, which is neither a registered mlfactory model nor a "
                        f"Lightning class; refusing to import it. {_registered_hint()}"
                    )
            else:
                _check_class_paths(item, source)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_class_paths(item, source)


def _registered_hint() -> str:
    return f"Registered models: {', '.join(spec.name for spec in list_models())} (`mlfactory models`)."


def _load_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """The checkpoint's contents, loaded without running code (``weights_only``); one clear error if damaged."""
    import torch

    path = Path(ckpt_path)
    if not path.is_file():
        raise RunError(
            f"checkpoint {path} does not exist; pass a .ckpt file from a run's checkpoints/ folder "
            "(e.g. lightning_logs/xgboost/<run_id>/checkpoints/best.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise RunError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {reason[:200]}); it is damaged or not a "
            "PyTorch checkpoint. Use another one (e.g. checkpoints/best.ckpt) or start the run again"
        ) from None
    if not isinstance(checkpoint, dict):
        raise RunError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a Lightning checkpoint")
    return checkpoint


def _check_checkpoint_classes(ckpt_path: str, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint that names a class other than a registered model, before anything imports it.

    Every command reads the checkpoint's hyper-parameters: mlfactory for validate/test/predict, and
    LightningCLI itself for all of them, fit included (it hands ``_class_path`` to jsonargparse).
    """
    path = Path(ckpt_path)
    identity = checkpoint.get("mlfactory")
    hyper_parameters = checkpoint.get("hyper_parameters")
    for part in (identity, hyper_parameters, checkpoint.get("datamodule_hyper_parameters")):
        if part is not None and not isinstance(part, dict):
            raise RunError(f"checkpoint {path} is damaged or was not written by mlfactory: a section is not a mapping")
    for class_path in ((identity or {}).get("class_path"), (hyper_parameters or {}).get("_class_path")):
        if class_path is not None and (not isinstance(class_path, str) or registry_name_of(class_path) is None):
            raise RunError(
                f"checkpoint {path} names model class {class_path!r}, which is not a registered mlfactory model; "
                f"refusing to import it. {_registered_hint()}"
            )
    _check_class_paths(
        {"model": hyper_parameters or {}, "data": checkpoint.get("datamodule_hyper_parameters") or {}},
        f"checkpoint {path}",
    )


def _args_from_checkpoint(ckpt_path: str, checkpoint: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``--model CLASS`` with its init arguments, and the data settings the checkpoint was trained with.

    They are placed right after the command, so options given later override them. The checkpoint's
    classes have passed :func:`_check_checkpoint_classes`.
    """
    path = Path(ckpt_path)
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    class_path = (checkpoint.get("mlfactory") or {}).get("class_path") or hyper_parameters.get("_class_path")
    if not class_path:
        raise RunError(f"checkpoint {path} was not written by an mlfactory model; pass --model explicitly")
    data_args = [
        f"--data.{key}={_cli_value(value)}"
        for key, value in _settings(checkpoint.get("datamodule_hyper_parameters") or {}, path).items()
    ]
    # every init argument too, so required ones (an ensemble's members) pass the parser's check
    model_args = ["--model", class_path] + [
        f"--model.{key}={_cli_value(value)}" for key, value in _settings(hyper_parameters, path).items()
    ]
    return model_args, data_args


def _settings(parameters: dict[str, Any], path: Path) -> dict[str, Any]:
    """A checkpoint's init arguments, less Lightning's ``_`` bookkeeping; a key must be a plain name."""
    settings = {}
    for key, value in parameters.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        if not key.isidentifier() or key in ("class_path", "init_args", "dict_kwargs", "help"):
            raise RunError(f"checkpoint {path} holds a setting named {key!r}, which no mlfactory model or data "
                           "module has; it is damaged or tampered with")
        settings[key] = value
    return settings


def _cli_value(value: Any) -> str:
    """A value as the command line spells it: strings bare, everything else as JSON (which YAML reads)."""
    return value if isinstance(value, str) else json.dumps(value)

