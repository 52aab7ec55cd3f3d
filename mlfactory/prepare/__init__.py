"""``mlfactory prepare``: leakage-safe split directories from raw OHLCV bars.

The pipeline (docs/data.md, "Preparing splits from raw bars"):

    read + validate + repair bars (bars.py)
      -> per symbol: multi-timeframe TA-Lib features on closed bars only (timeframes.py, features.py)
      -> triple-barrier labels and sample weights (labels.py, weights.py)
      -> chronological splits with purge and embargo (splits.py)
      -> a scaler fitted on train only (scaling.py)
      -> {train,val,test}_scaled.parquet + scaling_metadata.json, written atomically (pipeline.py)

Importing this package is light; the pipeline and TA-Lib load on first use.
"""

from __future__ import annotations

from typing import Any

from mlfactory.errors import DataError

__all__ = ["OutputExistsError", "PrepareError", "build_features", "load_bars", "prepare_splits"]


class PrepareError(DataError):
    """Raw bars or ``prepare`` options that cannot become a split directory; says what, where and what to do."""


class OutputExistsError(PrepareError):
    """The output directory exists; the message names the switch that replaces it in the caller's words.

    ``template`` holds ``{option}``: ``overwrite=True`` from Python, and the command line re-raises
    it with its own flag (``naming("--overwrite")``).
    """

    def __init__(self, template: str, option: str = "overwrite=True") -> None:
        self.template = template
        super().__init__(template.format(option=option))

    def naming(self, option: str) -> "OutputExistsError":
        """The same error, naming ``option`` as the way to replace the output."""
        return OutputExistsError(self.template, option)


def __getattr__(name: str) -> Any:
    if name == "prepare_splits":
        from mlfactory.prepare.pipeline import prepare_splits

        return prepare_splits
    if name == "build_features":
        from mlfactory.prepare.features import build_features

        return build_features
    if name == "load_bars":
        from mlfactory.prepare.bars import load_bars

        return load_bars
    raise AttributeError(f"module 'mlfactory.prepare' has no attribute {name!r}")
