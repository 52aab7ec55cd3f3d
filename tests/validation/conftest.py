"""Fixtures of the cross-validation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfactory.validation.runner import CVSettings, run_cv

HORIZON = 5
XGB = {"n_estimators": 40, "max_depth": 3, "n_jobs": 1}


@pytest.fixture(scope="session")
def cross_validate():
    """``cross_validate(data_dir, root, settings, name="xgboost", ...)``: ``run_cv`` into ``root/cv``."""
    return _cross_validate


def _cross_validate(data_dir: Path, root: Path, settings: CVSettings, name: str = "xgboost", max_epochs: int = 1,
                   on_split_end=None, before_fit=None, data: dict | None = None, **model) -> tuple[dict, Path]:
    """``run_cv`` of model ``name`` (``XGB`` for xgboost) into ``root/cv``; ``before_fit(split_dir)`` runs in
    the split's process just before its Trainer is built (to make a split fail)."""
    import lightning as L

    from mlfactory import FactoryDataModule, create_model

    def make_trainer(split_dir: Path):
        from lightning.pytorch.callbacks import ModelCheckpoint
        from lightning.pytorch.loggers import TensorBoardLogger

        from mlfactory import RunRecord

        if before_fit is not None:
            before_fit(split_dir)
        L.seed_everything(0, verbose=False)
        logger = TensorBoardLogger(save_dir=str(split_dir.parent.parent), name=split_dir.parent.name,
                                   version=split_dir.name)
        return L.Trainer(max_epochs=max_epochs, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[RunRecord(), ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)])

    run = root / "cv"
    params = {**(XGB if name == "xgboost" else {}), **model}
    summary = run_cv(lambda: create_model(name, **params),
                     FactoryDataModule(data_dir=str(data_dir), horizon=HORIZON, **(data or {})), make_trainer, run,
                     settings, on_split_end=on_split_end)
    return summary, run
