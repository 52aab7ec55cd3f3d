"""LightningCLI for mlfactory: registry short names, checkpoint-aware commands, one run directory per run."""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from mlfactory.atomic import process_alive
from mlfactory.callbacks.run_record import RunRecord
from mlfactory.data.datamodule import FactoryDataModule
from mlfactory.errors import ConfigError, RunError
from mlfactory.models.base import FactoryModule
from mlfactory.registry import class_path_for, list_models, registry_name_of

SHARED_CONFIG = Path("configs") / "training.yaml"
LOG_ROOT = "lightning_logs"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# class paths a run's config.yaml or a checkpoint may name besides registered models
TRUSTED_PREFIXES = ("lightning.pytorch.",)


def new_run_id() -> str:
    """Sortable and unique even for runs started in the same second: ``20261127-194512-3fa9c1``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class FactoryCLI(LightningCLI):
    """LightningCLI over every registered model and :class:`FactoryDataModule`.

    Adds the checkpoint and early-stopping callbacks as configurable groups (``--checkpoint.*``,
    ``--early_stopping.*``), the run record, and a TensorBoard logger whose directory is the run
    directory ``lightning_logs/<model>/<run_id>``.
    """

    def __init__(self, args: list[str], run_dir: Path | None = None) -> None:
        self.resume_dir = run_dir
        shared = [str(SHARED_CONFIG)] if SHARED_CONFIG.is_file() else []
        super().__init__(
            model_class=FactoryModule,
            datamodule_class=FactoryDataModule,
            subclass_mode_model=True,
            trainer_defaults={"callbacks": [RunRecord()]},
            seed_everything_default=42,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={command: {"default_config_files": shared} for command in self.subcommands()},
            auto_configure_optimizers=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
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
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val_loss", "early_stopping.mode": "min",
                             "early_stopping.patience": 5})

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):  # unless the user chose a logger: the run directory
            if self.resume_dir is not None:
                run = self.resume_dir
            else:
                name = getattr(self.model, "registry_name", "") or type(self.model).__name__.lower()
                run = Path(config.get("default_root_dir") or ".") / LOG_ROOT / name / new_run_id()
            kwargs["logger"] = TensorBoardLogger(save_dir=str(run.parent.parent), name=run.parent.name, version=run.name)
        return super().instantiate_trainer(**kwargs)

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
    args = list(argv)
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


def _class_path_value(value: str) -> str:
    if value.startswith("{") or value.startswith("-"):
        return value  # an inline dict or a flag: leave it to jsonargparse
    return class_path_for(value)


def _resolve_config(value: str) -> tuple[str, bool]:
    """Map a recipe's ``model: lstm`` (or ``class_path: lstm``) to the class path; return YAML text if changed."""
    path = Path(value)
    if not path.is_file():
        return value, False
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

