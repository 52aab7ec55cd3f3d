"""The ``mlfactory`` command. Light commands answer without importing torch or Lightning."""

from __future__ import annotations

import importlib
import os
import sys

from mlfactory import __version__
from mlfactory.errors import MLFactoryError

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")

# command -> (module, function taking the remaining arguments and returning the exit code); imported on use
COMMANDS = {
    "models": ("mlfactory.cli.models", "list_command"),
    "compare": ("mlfactory.cli.compare", "compare_command"),
    "prepare": ("mlfactory.cli.prepare", "prepare_command"),
    "predict-bundle": ("mlfactory.cli.bundle_predict", "bundle_predict_command"),
    "sign": ("mlfactory.cli.bundle_predict", "bundle_sign_command"),
    "cv": ("mlfactory.cli.cv", "cv_command"),
    "tune": ("mlfactory.cli.tune", "tune_command"),
    "serve": ("mlfactory.cli.serve", "serve_command"),
}

USAGE = f"""\
usage: mlfactory COMMAND [options]

mlfactory {__version__}: train any registered model on leakage-safe time-series splits.

commands:
  fit        train a model:            mlfactory fit --model xgboost
  validate   evaluate on val:          mlfactory validate --ckpt_path RUN/checkpoints/best.ckpt
  test       evaluate on test:         mlfactory test --ckpt_path RUN/checkpoints/best.ckpt
  predict    write predictions:        mlfactory predict --ckpt_path RUN/checkpoints/best.ckpt
             or, on raw features:      mlfactory predict --bundle RUN/bundle --input F --output preds.parquet
  serve      HTTP predictions:         mlfactory serve --bundle RUN/bundle --port 8000
  sign       sign a bundle you trust:  mlfactory sign --bundle RUN/bundle   (key: MLFACTORY_BUNDLE_KEY)
  models     list registered models:   mlfactory models
  prepare    build splits from bars:   mlfactory prepare --input bars.csv --output data/splits/scaled
  compare    leaderboard of runs:      mlfactory compare lightning_logs/ --sort test_sharpe
  cv         purged cross-validation:  mlfactory cv --model xgboost --cv.scheme cpcv --cv.n_groups 6
  tune       hyper-parameter search:   mlfactory tune --model lightgbm --tune.n_trials 20

Recipes by name, from anywhere: mlfactory fit --config lstm (`mlfactory fit --help` lists them). Any value can be overridden:
--model.hidden_size 128, --data.horizon 20, --trainer.max_epochs 30; --print_config shows
the resolved config, --verbose brings back Lightning's own messages. `mlfactory fit --help` lists every
option. Docs: docs/cli.md.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = args[0] if args else "--help"
    try:
        if command in ("-h", "--help", "help"):
            print(USAGE, end="")
            return 0
        if command == "--version":
            print(__version__)
            return 0
        if command == "predict" and any(a == "--bundle" or a.startswith("--bundle=") for a in args[1:]):
            command = "predict-bundle"
        if command in COMMANDS:
            module_name, function_name = COMMANDS[command]
            return getattr(importlib.import_module(module_name), function_name)(args[1:])
        if command in TRAINER_COMMANDS:
            from mlfactory.cli.lightning_cli import run

            return run(args)
        print(f"mlfactory: error: unknown command {command!r}\n", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return 2
    except MLFactoryError as err:
        print(f"mlfactory: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (`mlfactory models | head`)
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("mlfactory: interrupted", file=sys.stderr)
        return 130

