"""Runs of each family trained once per session through Trainer + RunRecord, and the raw test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch

SEQ_LEN = 8
HORIZON = 5
FAMILY_PARAMS: dict[str, dict] = {
    "xgboost": {"n_estimators": 30, "max_depth": 3, "n_jobs": 2},          # boosting
    "logistic": {},                                                         # classical
    "lstm": {"hidden_size": 8, "num_layers": 1},                            # neural
    "voting": {                                                             # ensemble, mixed families
        "members": [{"name": "xgboost", "n_estimators": 20, "max_depth": 3, "n_jobs": 2},
                    {"name": "lstm", "hidden_size": 8, "num_layers": 1}],
        "neural_max_epochs": 1,
    },
}


@pytest.fixture(scope="session")
def fitted_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``fitted_run(name)``: the run directory of a small model trained on the sample data (once per session)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from mlfactory import FactoryDataModule, RunRecord, create_model

    root = tmp_path_factory.mktemp("runs")
    runs: dict[str, Path] = {}

    def fit(name: str) -> Path:
        if name not in runs:
            torch.manual_seed(0)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small networks run faster on one thread than two contended ones
            try:
                trainer = L.Trainer(
                    max_epochs=1,
                    logger=TensorBoardLogger(save_dir=str(root), name=name),
                    callbacks=[RunRecord(importance_samples=0),
                               ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)],
                    enable_progress_bar=False,
                    enable_model_summary=False,
                )
                datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=HORIZON, seq_len=SEQ_LEN, batch_size=128)
                trainer.fit(create_model(name, **FAMILY_PARAMS[name]), datamodule=datamodule)
            finally:
                torch.set_num_threads(threads)
            runs[name] = Path(trainer.log_dir)
        return runs[name]

    return fit


def _unscale(frame: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """``frame`` with its features back in raw units: x * scale + center (scaling_metadata.json)."""
    meta = json.loads((data_dir / "scaling_metadata.json").read_text())
    features = meta["features"]
    raw = frame.copy()
    scale = np.array([meta["scale"][f] for f in features])
    center = np.array([meta["center"][f] for f in features])
    raw[features] = frame[features].to_numpy(dtype=np.float64) * scale + center
    return raw


@pytest.fixture(scope="session")
def raw_test(sample_dir: Path) -> pd.DataFrame:
    """The sample test split with unscaled features (labels and raw bars kept, as extra columns)."""
    return _unscale(pd.read_parquet(sample_dir / "test_scaled.parquet"), sample_dir)


@pytest.fixture(scope="session")
def run_predictions() -> Callable[[Path], pd.DataFrame]:
    """``run_predictions(run)``: the run's own test predictions (from the trained model), as a table."""
    return _run_predictions


def _run_predictions(run: Path) -> pd.DataFrame:
    """datetime, symbol, p0, p1, p2 of predictions/test_predictions.npz."""
    saved = np.load(run / "predictions" / "test_predictions.npz")
    table = pd.DataFrame({
        "datetime": pd.to_datetime(saved["datetime"]).tz_localize("UTC"),
        "symbol": saved["symbol"].astype(str),
    })
    table[["p0", "p1", "p2"]] = saved["probabilities"]
    return table
