"""mlfactory: a Lightning model factory for financial time series.

Light to import: the registry is available at once; training pieces load on first use.

>>> import lightning as L
>>> from mlfactory import create_model, FactoryDataModule
>>> trainer = L.Trainer(max_epochs=1)
>>> trainer.fit(create_model("xgboost"), FactoryDataModule(horizon=20))  # trains a while, writes lightning_logs/  # doctest: +SKIP
>>> list_runs("lightning_logs")  # the leaderboard, as ``mlfactory compare`` prints it  # doctest: +SKIP
>>> load_run(trainer.log_dir).predictions("test")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from mlfactory.errors import MLFactoryError
from mlfactory.registry import create_model, list_models, register
from mlfactory.version import __version__

__all__ = [
    "FactoryDataModule",
    "FactoryProgressBar",
    "MLFactoryError",
    "Run",
    "RunRecord",
    "TimeSeriesDataContainer",
    "__version__",
    "create_model",
    "list_models",
    "list_runs",
    "load_run",
    "register",
]


def __getattr__(name: str) -> Any:
    if name == "FactoryDataModule":
        from mlfactory.data.datamodule import FactoryDataModule

        return FactoryDataModule
    if name == "TimeSeriesDataContainer":
        from mlfactory.data.container import TimeSeriesDataContainer

        return TimeSeriesDataContainer
    if name == "FactoryProgressBar":  # the CLI's bar, readable in notebooks without widgets and in logs
        from mlfactory.cli.progress import FactoryProgressBar

        return FactoryProgressBar
    if name == "RunRecord":
        from mlfactory.callbacks.run_record import RunRecord

        return RunRecord
    if name in ("load_run", "list_runs", "Run"):  # pandas on first use, not on `import mlfactory`
        from mlfactory import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'mlfactory' has no attribute {name!r}")
