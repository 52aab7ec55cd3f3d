"""Data: the split contract, the in-memory container, lazy views and the DataModule.

Importing this package stays light; the heavy pieces load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FactoryDataModule", "TimeSeriesDataContainer", "SplitData"]


def __getattr__(name: str) -> Any:
    if name == "FactoryDataModule":
        from mlfactory.data.datamodule import FactoryDataModule

        return FactoryDataModule
    if name in ("TimeSeriesDataContainer", "SplitData"):
        from mlfactory.data import container

        return getattr(container, name)
    raise AttributeError(name)
