"""Write the golden fixtures: a checkpoint, a bundle and the test predictions of one model per family.

Run by hand, from the repository root, only when a format deliberately changes (then keep the old
folder and add a new one, so the old format stays tested):

    python tests/golden/build.py tests/golden/v1

Each ``<folder>/<model>/`` holds ``best.ckpt`` (the Lightning checkpoint), ``bundle/`` (the inference
bundle, unsigned) and ``test_predictions.npz`` (the run's own test predictions: ``row`` and
``probabilities``). tests/test_backward_compat.py loads them with today's code and requires the same
predictions on the same data: the test suite's sample splits, which the generator rebuilds identically.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

GOLDEN_PARAMS: dict[str, dict] = {
    "xgboost": {"n_estimators": 20, "max_depth": 3, "n_jobs": 1},  # boosting
    "logistic": {},  # classical (skops)
    "lstm": {"hidden_size": 8, "num_layers": 1},  # neural
    "voting": {  # ensemble of two families
        "members": [{"name": "xgboost", "n_estimators": 10, "max_depth": 3, "n_jobs": 1},
                    {"name": "lstm", "hidden_size": 8, "num_layers": 1}],
        "neural_max_epochs": 1,
    },
}
GOLDEN_DATA = {"horizon": 5, "seq_len": 8, "batch_size": 128}
SAMPLE = {"n_bars": 2500}  # the test suite's sample_dir (tests/conftest.py)


def build(out: Path) -> None:
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from conftest import TEST_PREPARE
    from mlfactory import FactoryDataModule, RunRecord, create_model
    from mlfactory.data.synthetic import make_sample_splits

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = make_sample_splits(Path(tmp) / "sample", **SAMPLE, **TEST_PREPARE)
        for name, params in GOLDEN_PARAMS.items():
            L.seed_everything(0, verbose=False)
            trainer = L.Trainer(
                max_epochs=1,
                logger=TensorBoardLogger(save_dir=tmp, name=name),
                callbacks=[RunRecord(importance_samples=0),
                           ModelCheckpoint(monitor="val_loss", filename="best", save_last=False)],
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            trainer.fit(create_model(name, **params), datamodule=FactoryDataModule(data_dir=str(data_dir), **GOLDEN_DATA))
            run = Path(trainer.log_dir)
            target = out / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            shutil.copy(run / "checkpoints" / "best.ckpt", target / "best.ckpt")
            shutil.copytree(run / "bundle", target / "bundle")
            saved = np.load(run / "predictions" / "test_predictions.npz")
            np.savez_compressed(target / "test_predictions.npz", row=saved["row"], probabilities=saved["probabilities"])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (out / "README.json").write_text(json.dumps({
        "written_by": f"tests/golden/build.py at commit {commit}",
        "models": GOLDEN_PARAMS, "data": GOLDEN_DATA, "sample": {**SAMPLE, **TEST_PREPARE},
    }, indent=2, default=list) + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "golden" / "v1")
