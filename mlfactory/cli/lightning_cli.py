"""LightningCLI for mlfactory: registry short names, checkpoint-aware commands, one run directory per run."""

from __future__ import annotations

import json
import secrets
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from mlfactory.callbacks.run_record import RunRecord
from mlfactory.data.datamodule import FactoryDataModule
from mlfactory.errors import ConfigError, RunError
from mlfactory.models.base import FactoryModule
from mlfactory.models.estimator import EstimatorModule
from mlfactory.registry import class_path_for

SHARED_CONFIG = Path("configs") / "training.yaml"
LOG_ROOT = "lightning_logs"


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

    def after_instantiate_classes(self) -> None:
        if not isinstance(self.model, EstimatorModule):
            return
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
    with warnings.catch_warnings():
        # the arguments are passed explicitly (rewritten); sys.argv stays as it is, because DDP's
        # launcher starts the other ranks by re-running it
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        FactoryCLI(args, run_dir=run_dir)
    return 0


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
    config, last = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    if not config.is_file() or not last.is_file():
        raise RunError(
            f"cannot resume {run}: it needs config.yaml and checkpoints/last.ckpt (a run stopped before its "
            "first epoch ended has no checkpoint; start it again instead)"
        )
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
    if args and args[0] != "fit" and ckpt_path is not None:
        model_args, data_args = _args_from_checkpoint(ckpt_path)
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


def _args_from_checkpoint(ckpt_path: str) -> tuple[list[str], list[str]]:
    """``--model CLASS`` with its init arguments, and the data settings the checkpoint was trained with.

    They are placed right after the command, so options given later override them.
    """
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
        raise RunError(f"cannot read checkpoint {path} ({type(err).__name__}: {err})") from None
    identity = checkpoint.get("mlfactory", {})
    class_path = identity.get("class_path") or checkpoint.get("hyper_parameters", {}).get("_class_path")
    if not class_path:
        raise RunError(f"checkpoint {path} was not written by an mlfactory model; pass --model explicitly")
    data_args = [
        f"--data.{key}={_cli_value(value)}"
        for key, value in checkpoint.get("datamodule_hyper_parameters", {}).items()
        if not key.startswith("_")  # Lightning's own bookkeeping
    ]
    # every init argument too, so required ones (an ensemble's members) pass the parser's check
    model_args = ["--model", class_path] + [
        f"--model.{key}={_cli_value(value)}"
        for key, value in checkpoint.get("hyper_parameters", {}).items()
        if not key.startswith("_")
    ]
    return model_args, data_args


def _cli_value(value: Any) -> str:
    """A value as the command line spells it: strings bare, everything else as JSON (which YAML reads)."""
    return value if isinstance(value, str) else json.dumps(value)

