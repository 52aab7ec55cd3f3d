"""Train models on your own numpy arrays with a plain Lightning ``Trainer``, as in a notebook.

Run it from the project root: ``python docs/examples/own_arrays.py``. ``ArrayDataModule`` takes
the train, val and test splits as ``(X, y)`` or ``(X, y, w)``: ``X`` a table (n, n_features) of rows
in time order, or pre-windowed samples (n, seq_len, n_features); ``y`` class indices 0, 1, 2;
``w`` optional sample weights. Every registered model trains on it, and with ``RunRecord`` among the
callbacks each fit writes the same run record as ``mlfactory fit`` (docs/architecture.md). The test
suite executes this file with ``MLFACTORY_EXAMPLE_FAST=1`` to keep it short.
"""

import os

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from mlfactory import RunRecord, create_model
from mlfactory.data.arrays import ArrayDataModule

fast = os.environ.get("MLFACTORY_EXAMPLE_FAST") == "1"
root = os.environ.get("MLFACTORY_EXAMPLE_ROOT", ".")
rng = np.random.default_rng(0)
SEQ_LEN = 10


def make_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A toy series of 4 features whose class (0 down, 1 flat, 2 up) follows the mean of feature 0 over 10 rows."""
    X = rng.normal(size=(n, 4)).astype(np.float32)
    recent_mean = np.convolve(X[:, 0], np.ones(SEQ_LEN) / SEQ_LEN)[:n]
    return X, np.digitize(recent_mean, [-0.15, 0.15])


def make_windows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut (n, seq_len, n_features) windows from a table, each labelled with its last row's class.

    Pre-windowed samples may as well come from many short series: each window stands on its own.
    """
    windows = np.lib.stride_tricks.sliding_window_view(X, SEQ_LEN, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(windows), y[SEQ_LEN - 1 :]


def fit(name: str, model, datamodule: ArrayDataModule) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=2 if fast else 20,
        logger=TensorBoardLogger(save_dir=os.path.join(root, "lightning_logs"), name=name),
        callbacks=[RunRecord(), ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)],
        enable_progress_bar=not fast,
    )
    trainer.fit(model, datamodule=datamodule)
    print(f"{name}: run written to {trainer.log_dir}")
    return trainer


n = 1000 if fast else 8000
train, val, test = make_table(n), make_table(n // 4), make_table(n // 4)

# 1. A table: estimators and tabular models read its rows, sequence models windows of seq_len rows.
fit("xgboost", create_model("xgboost", n_estimators=50 if fast else 300), ArrayDataModule(train, val, test))
fit("lstm", create_model("lstm", hidden_size=16 if fast else 32), ArrayDataModule(train, val, test, seq_len=SEQ_LEN))

# 2. Pre-windowed samples: sequence models read each window; seq_len is the windows' length.
windowed = ArrayDataModule(make_windows(*train), make_windows(*val), make_windows(*test))
trainer = fit("resnet1d", create_model("resnet1d", n_filters=8 if fast else 32), windowed)

# Predictions identify a sample by the split row of its last step; sample_index maps it back to the arrays.
predictions = np.load(os.path.join(trainer.log_dir, "predictions", "test_predictions.npz"))
samples = windowed.sample_index(predictions["row"])
labels = make_windows(*test)[1][samples]
print(f"resnet1d: test accuracy {np.mean(predictions['predicted_class'] == labels):.3f} on {len(samples)} windows")
