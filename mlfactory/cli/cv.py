"""``mlfactory cv``: everything ``fit`` takes plus ``--cv.*``; one ordinary fit per purged split (docs/validation.md).

The command line is parsed by the same LightningCLI as ``fit`` (recipes, ``--model``, ``--data.*``,
``--trainer.*``, ``--checkpoint.*``, ``--early_stopping.*``), with a ``cv`` group added. For every split
the parsed config is instantiated again, so each split gets a fresh model, fresh callbacks and an
ordinary Trainer, exactly as ``fit`` builds them, writing its run record to ``splits/<k>/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L

from mlfactory.cli.lightning_cli import LOG_ROOT, FactoryCLI, new_run_id, run_as_fit
from mlfactory.errors import ConfigError
from mlfactory.validation.runner import CVSettings, run_cv


class CrossValidationCLI(FactoryCLI):
    """``FactoryCLI`` whose ``fit`` runs a cross-validation instead of one fit."""

    shown_as = "cv"
    headline = ("Cross-validate a model: one ordinary fit per purged split (--cv.scheme walk_forward|cpcv|kfold, "
                "--cv.n_splits, --cv.embargo ...,\nlisted at the end); the run goes to lightning_logs/cv/<model>/<run_id>/.")

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_class_arguments(CVSettings, "cv")

    def _run_subcommand(self, subcommand: str) -> None:
        config = self.config[subcommand]
        settings = CVSettings(**config["cv"].as_dict())
        if config.get("ckpt_path"):
            raise ConfigError("mlfactory cv fits every split from scratch; drop --ckpt_path")
        if self._get(self.config, "trainer", default={}).get("logger") not in (None, True):
            raise ConfigError("mlfactory cv writes each split's record to lightning_logs/cv/<model>/<run_id>/splits/<k>/; "
                              "drop --trainer.logger")
        name = getattr(self.model, "registry_name", "") or type(self.model).__name__.lower()
        root = Path(self._get(self.config, "trainer", default={}).get("default_root_dir") or ".")
        run_dir = root / LOG_ROOT / "cv" / name / new_run_id()
        seed = config.get("seed_everything")

        def make_model() -> L.LightningModule:
            # seeded before the model is built, as fit seeds before it instantiates the config: a split's
            # initial weights are those of a plain fit with the same seed
            if isinstance(seed, int) and not isinstance(seed, bool):
                L.seed_everything(seed, verbose=False)
            self._fresh = self.parser.instantiate_classes(self.config)
            return self._fresh[subcommand]["model"]

        def make_trainer(split_dir: Path) -> L.Trainer:
            # the callbacks and trainer of the config instantiated with this split's model (make_model)
            self.config_init = self._fresh
            self.resume_dir = split_dir  # FactoryCLI's logger then writes the split's record there
            self._fresh[subcommand]["record"].plots = settings.split_plots
            return self.instantiate_trainer()

        summary = run_cv(make_model, self.datamodule, make_trainer, run_dir, settings)
        means = summary["across_splits"]["balanced_accuracy"]
        if means.get("n"):
            print(f"{summary['scheme']}: {summary['n_splits']} splits, {summary['n_paths']} path(s); test balanced "
                  f"accuracy {means['mean']:.3f} ± {means['std']:.3f} across splits; chance is 0.333", file=sys.stderr)
        print(f"run: {run_dir}", file=sys.stderr)


def cv_command(argv: list[str]) -> int:
    """Run ``mlfactory cv ARGS``: ``fit``'s options plus ``--cv.*``."""
    return run_as_fit(CrossValidationCLI, argv)
