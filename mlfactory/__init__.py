"""mlfactory: a Lightning model factory for financial time series.

Light to import: the registry is available at once; training pieces load on first use.

>>> import lightning as L
>>> from mlfactory import create_model, FactoryDataModule
>>> trainer = L.Trainer(max_epochs=1)
>>> trainer.fit(create_model("xgboost"), FactoryDataModule(horizon=20))  # trains a while, writes lightning_logs/  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from mlfactory.errors import MLFactoryError
from mlfactory.registry import create_model, list_models, register
from mlfactory.version import __version__

__all__ = [
    "FactoryDataModule",
    "MLFactoryError",
    "RunRecord",
    "TimeSeriesDataContainer",
    "__version__",
    "create_model",
    "list_models",
    "register",
]


def __getattr__(name: str) -> Any:
    if name == "FactoryDataModule":
        from mlfactory.data.datamodule import FactoryDataModule

        return FactoryDataModule
    if name == "TimeSeriesDataContainer":
        from mlfactory.data.container import TimeSeriesDataContainer

        return TimeSeriesDataContainer
    if name == "RunRecord":
        from mlfactory.callbacks.run_record import RunRecord

        return RunRecord
    raise AttributeError(f"module 'mlfactory' has no attribute {name!r}")
