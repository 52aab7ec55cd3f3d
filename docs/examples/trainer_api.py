"""Train xgboost and lstm with a plain Lightning ``Trainer``, as in a notebook.

Run it from the project root: ``python docs/examples/trainer_api.py``. With ``RunRecord`` among the
callbacks, each fit writes the same run record as ``mlfactory fit`` (docs/architecture.md). The
test suite executes this file with ``MLFACTORY_EXAMPLE_FAST=1`` to keep it short.
"""

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from mlfactory import FactoryDataModule, RunRecord, create_model

fast = os.environ.get("MLFACTORY_EXAMPLE_FAST") == "1"
root = os.environ.get("MLFACTORY_EXAMPLE_ROOT", ".")

models = {
    "xgboost": create_model("xgboost", n_estimators=50 if fast else 500),
    "lstm": create_model("lstm", hidden_size=16 if fast else 64),
}
for name, model in models.items():
    # data_dir=None: the embedded sample data, built once into ~/.cache/mlfactory
    datamodule = FactoryDataModule(horizon=5, seq_len=30)
    trainer = L.Trainer(
        max_epochs=1 if fast else 20,
        logger=TensorBoardLogger(save_dir=os.path.join(root, "lightning_logs"), name=name),
        callbacks=[RunRecord(), ModelCheckpoint(monitor="val_loss", filename="best", save_last=True)],
        enable_progress_bar=not fast,
        limit_train_batches=20 if fast else None,
    )
    trainer.fit(model, datamodule=datamodule)
    print(f"{name}: run written to {trainer.log_dir}")
