"""What the trainer commands print: quiet by default, one-line usage errors, a help page that starts with the basics.

Default output is what a user needs: what trains, its progress, the result and where it went.
Lightning's start-up lines (GPU/TPU availability, the seed, tips), the model summary and known-harmless
library warnings are hidden; ``--verbose`` brings them back (docs/cli.md, "Console output").
"""

from __future__ import annotations

import difflib
import logging
import re
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jsonargparse import DefaultHelpFormatter

from mlfactory.registry import list_models

# loggers whose INFO lines are Lightning's start-up chatter (GPU/TPU lines, "Seed set to", the litlogger
# tip, the model summary); warnings and errors still show
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")

# library warnings that say nothing a user of mlfactory can act on
HARMLESS_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",  # torch/Lightning internals (_pytree)
    r"The dirpath has changed from",  # test/validate/predict from a run's checkpoint write elsewhere
    r".*smaller than the logging interval.*",  # few batches per epoch: the epoch metrics are logged anyway
    r".*does not have many workers.*",  # in-memory tensors: workers would only add start-up time
    r".*`max_epochs` was not set.*",
    r"Checkpoint directory .* exists and is not empty",  # resuming into the same run
)


@contextmanager
def console(verbose: bool) -> Iterator[None]:
    """Hide Lightning's INFO chatter and the harmless warnings inside the block, unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def pop_flag(args: list[str], flag: str) -> tuple[list[str], bool]:
    """``args`` without ``flag`` (a bare switch), and whether it was there."""
    kept = [a for a in args if a != flag]
    return kept, len(kept) != len(args)


# --- help ----------------------------------------------------------------------------------------------
FIT_HEADLINE = "Train a model on leakage-safe chronological splits; the run goes to lightning_logs/<model>/<run_id>/."


def fit_description(recipes: list[str], headline: str = FIT_HEADLINE, resumes: bool = True) -> str:
    """The first screen of ``mlfactory fit --help`` (and of ``cv``/``tune``, which take every fit option after
    their ``headline``; they resume a study or start again, so without ``resumes``): choosing a model, the data,
    recipes, resuming."""
    models = textwrap.fill(", ".join(spec.name for spec in list_models()), width=96, initial_indent="  ",
                           subsequent_indent="  ")
    names = textwrap.fill(", ".join(recipes), width=96, initial_indent="  ", subsequent_indent="  ")
    resume = "\n  --resume RUN_DIR               continue a fit that stopped, from its checkpoints/last.ckpt"
    return f"""\
{headline}

Choose a model, one of:
{models}
  --model NAME                   e.g. --model xgboost; `mlfactory models` describes each one
  --model.help NAME              that model's options, e.g. --model.help lstm
  --model.OPTION VALUE           e.g. --model.hidden_size 128
The data:
  --data.data_dir DIR            a split directory from `mlfactory prepare` (unset: the embedded sample)
  --data.horizon 5               the label horizon in bars; --data.seq_len 30 for sequence models
A recipe (a YAML file of settings; options after it override it):
  --config NAME|FILE             a packaged recipe by name, or any .yaml file. Packaged:
{names}
{"Resume, print, verbosity:" + resume if resumes else "Print, verbosity:"}
  --print_config                 print the resolved settings as YAML and exit
  --verbose                      also show Lightning's start-up lines, the model summary, library warnings

Every option follows (--trainer.*, --data.*, --checkpoint.*, --early_stopping.*, --record.*); docs/cli.md has examples."""


EVALUATE_DESCRIPTION = """\
{what} with a trained run's checkpoint: mlfactory {command} --ckpt_path RUN/checkpoints/best.ckpt
The model and its data settings are read from the checkpoint; the output goes to RUN/evaluations/{command}-<id>/.
--verbose also shows Lightning's start-up lines and library warnings."""

EVALUATE_WHAT = {"validate": "Evaluate on the val split", "test": "Evaluate on the test split",
                 "predict": "Write predictions of --data.predict_split (default test)"}

def describe_model_options(parser: Any) -> None:
    """Title the ``--model`` section of ``--help`` by the registered models, not by the base class's docstring."""
    group = getattr(parser, "groups", {}).get("model")
    if group is not None:
        group.title = "The model"
        group.description = "--model.OPTION VALUE sets an option of the chosen model; `--model.help NAME` lists them."
    names = ", ".join(spec.name for spec in list_models())
    for action in parser._actions:
        if action.dest == "model":
            action.help = f"a registered model: {names} (`mlfactory models` describes them), or a class path"
        elif action.dest == "model.help":
            action.help = "show one model's options and exit, e.g. --model.help lstm"


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help layout, with descriptions kept as written (the fit overview is a small table)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def subcommand_kwargs(command: str, recipes: list[str], shown_as: str = "fit", headline: str = FIT_HEADLINE
                      ) -> dict[str, Any]:
    """Parser arguments of one trainer command: a short usage line and a description that starts with the basics.

    ``shown_as`` and ``headline`` name the command that runs as ``fit`` (``cv``, ``tune``) in its usage and help.
    """
    if command == "fit":
        return {"usage": f"mlfactory {shown_as} [--model NAME | --config RECIPE] [--data.data_dir DIR] [options]",
                "description": fit_description(recipes, headline, resumes=shown_as == "fit"),
                "formatter_class": HelpFormatter}
    return {"usage": f"mlfactory {command} --ckpt_path CKPT [options]", "formatter_class": HelpFormatter,
            "description": EVALUATE_DESCRIPTION.format(what=EVALUATE_WHAT[command], command=command)}


# --- usage errors in one line ------------------------------------------------------------------------------
BOILERPLATE = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>",
               "Not a valid subclass", "Problem with given class_path", "Parser key \"model\":")


def usage_message(message: str, args: list[str], options: list[str], command: str = "fit") -> str:
    """One line for a parse error of a trainer command: the bad key and the closest valid ones.

    Args:
        message: jsonargparse's message (often many lines: the tried union types, the given value).
        args: the command line that was parsed (model names already turned into class paths).
        options: every ``--option`` of the command's parser, for suggestions outside ``--model.*``.
        command: the command as typed (``cv`` and ``tune`` parse as ``fit``), for the help it points to.
    """
    missing = re.search(r"given class_path '([\w.]+)':\s*(?:Key ['\"]([\w.]+)['\"] is required|the following "
                        r"arguments are required: ([\w.]+))", message)
    if missing:
        name, key = model_label(missing.group(1)), missing.group(2) or missing.group(3)
        return f"{name} needs --model.{key} (`mlfactory fit --model.help {name}` describes it)"
    required = re.search(r"arguments are required: (\S+)", message)
    if required:
        key = required.group(1).split(".", 1)[-1]
        if key == "model" and args and args[0] in ("validate", "test", "predict"):
            return f"{args[0]} needs a trained run's checkpoint: --ckpt_path RUN/checkpoints/best.ckpt"
        if key == "model":
            return ("no model chosen: pass --model NAME (one of: "
                    f"{', '.join(spec.name for spec in list_models())}) or --config RECIPE")
        return f"--{key} is required"
    chosen = re.search(r"given class_path '([\w.]+)':", message)
    if chosen and model_label(chosen.group(1)) == chosen.group(1):  # the base class: no model was chosen
        key = re.search(r"NestedArg\(key='([\w.]+)'", message)
        option = f"--model.{key.group(1)}" if key else "a --model.* option"
        return (f"{option} comes before any model is chosen: pass --model NAME, or put it after the --config "
                "that names the model")
    rejected = re.search(r"given class_path '([\w.]+)':\s*(?:Option|Key) ['\"]([\w.]+)['\"] is not accepted", message)
    if rejected:
        return unknown_model_option(rejected.group(1), rejected.group(2))
    invalid = re.search(r"given class_path '([\w.]+)':\s*Parser key \"([\w.]+)\":\s*(.+?)(?:\n\s*- |\Z)", message, re.S)
    if invalid:
        return f"{model_label(invalid.group(1))}: --model.{invalid.group(2)}: {squeeze(invalid.group(3))}"
    unrecognized = re.search(r"Unrecognized arguments: (.*)", message, re.I)
    if unrecognized:
        bad = [token.split("=", 1)[0] for token in unrecognized.group(1).split() if token.startswith("--")]
        if bad:
            return unknown_option(bad[0], options, command)
    return squeeze(message)


def unknown_model_option(class_path: str, key: str) -> str:
    """``--model.KEY`` that the model does not take, with the closest of its options."""
    name = model_label(class_path)
    valid = model_options(class_path)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join('--model.' + k for k in close)}? " if close else ""
    return f"{name} has no option --model.{key}; {hint}`mlfactory fit --model.help {name}` lists its options"


def unknown_option(option: str, options: list[str], command: str = "fit") -> str:
    """An option the command does not have, with the closest ones it has."""
    close = difflib.get_close_matches(option, options, n=3, cutoff=0.7)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; `mlfactory {command} --help` lists every option"
    return f"unknown option {option}{hint}"


def model_label(class_path: str) -> str:
    """The registry name of a model class path (the class path itself if unregistered)."""
    from mlfactory.registry import registry_name_of

    return registry_name_of(class_path) or class_path


def model_options(class_path: str) -> list[str]:
    """The ``--model.*`` keys a model class accepts, as jsonargparse derives them from its signature."""
    import importlib

    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls)
    except Exception:  # noqa: BLE001 - suggestions are a courtesy; the error is reported either way
        return []
    return [a.dest for a in parser._actions if a.dest not in ("help", "config") and not a.dest.startswith("_")]


def squeeze(message: str) -> str:
    """jsonargparse's multi-line message as one line, without the union-type bookkeeping."""
    lines = [line.strip(" -") for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(BOILERPLATE)]
    text = "; ".join(kept or lines)
    text = re.sub(r"Expected a (.+?)\. Got value: (.*?)(;|$)", r"expected \1, got '\2'\3", text)
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", text)
    text = re.sub(r'Parser key "([\w.]+)":;?', r"--\1:", text)
    return re.sub(r"\s+", " ", text)[:300]
