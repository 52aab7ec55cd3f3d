"""Check inceptiontime and resnet1d against their papers on a standard UCR dataset. Not a test.

Both are classification-native architectures, so they can be checked against the accuracy their
authors report. The dataset is ArrowHead from the UCR archive (3 classes: the factory's heads are
3-class; 36 training and 175 test series of 251 steps, univariate). It ships inside the wheel of
``aeon``, which is not a dependency of mlfactory and is never imported here: the script only reads
the two ``.ts`` files. Get them with either of::

    pip download --no-deps aeon==1.6.0 -d /tmp/aeon    # then: --wheel /tmp/aeon/aeon-1.6.0-py3-none-any.whl
    pip install --no-deps aeon==1.6.0                  # the data files are then found in site-packages

Run from the project root::

    python benchmarks/tsc_reference.py --wheel /tmp/aeon/aeon-1.6.0-py3-none-any.whl --runs 5

Protocol (the papers' own, as in the authors' reference code): each series z-normalised; the
published networks (both models' defaults are CPU-sized, so the script sets the paper's
``n_filters=32, bottleneck_size=32, kernel_size=40`` for InceptionTime and ``n_filters=64`` for ResNet
unless ``--defaults``); Adam at 1e-3, halved after 50 epochs without a lower
training loss, down to 1e-4; 1500 epochs; batch size 64 for InceptionTime and
``int(min(n_train / 10, 64)) = 3`` for ResNet; the weights of the epoch with the lowest training
loss are kept. The factory's programmatic API runs it: an ``ArrayDataModule`` whose validation split
is the training split (so checkpoint selection and the learning-rate schedule watch the training
loss, as in the papers, and never the test split), a plain ``Trainer`` with ``RunRecord``.

Reported accuracies:

- ResNet, ArrowHead: 0.84, the mean test accuracy of 10 runs in Ismail Fawaz et al., 2019, "Deep
  learning for time series classification: a review" (DMKD; the authors' results-ucr.csv), whose
  ResNet reproduces Wang et al., 2017. Wang et al. did not evaluate ArrowHead: their 44 datasets
  predate it.
- InceptionTime, ArrowHead: 0.8286, the test accuracy of the 5-network ensemble in Ismail Fawaz et
  al., 2020 (the authors' results-InceptionTime-85.csv). This script reports each network and the
  average of their probabilities over ``--runs`` networks (5 reproduces the ensemble).

``--models patchtst itransformer`` runs the two forecasting models the same way (batch 16), to
compare their settings before and after a change (``--model-args '{"channels": null}'`` is their
per-feature mode); their papers report no ArrowHead accuracy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

DATASET = "ArrowHead"
PAPER_ACCURACY = {"resnet1d": 0.84, "inceptiontime": 0.8286}
PAPER_SOURCE = {
    "resnet1d": "Ismail Fawaz et al. 2019 (mean of 10 ResNet runs)",
    "inceptiontime": "Ismail Fawaz et al. 2020 (ensemble of 5 networks)",
}
BATCH_SIZE = {"inceptiontime": 64, "resnet1d": None}  # None: int(min(n_train / 10, 64)), as the reference code
# forecasting papers without an ArrowHead figure: run to compare their settings (--model-args), batch 16
UNPUBLISHED = ("itransformer", "patchtst")
# the published networks where the model's defaults differ (inceptiontime's and resnet1d's are CPU-sized)
PAPER_ARGS = {"inceptiontime": {"n_filters": 32, "bottleneck_size": 32, "kernel_size": 40}, "resnet1d": {"n_filters": 64}}


def read_ts(text: str) -> tuple[np.ndarray, np.ndarray]:
    """A univariate, equal-length ``.ts`` file: (n, length) float values and the (n,) class labels as strings."""
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.lower() == "@data") + 1
    rows = [line.rsplit(":", 1) for line in lines[start:] if line and not line.startswith("#")]
    values = np.array([[float(v) for v in series.split(",")] for series, _ in rows])
    return values, np.array([label for _, label in rows])


def load(wheel: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ArrowHead's train and test splits, from an aeon wheel or an installed aeon (without importing it)."""
    names = {split: f"aeon/datasets/data/{DATASET}/{DATASET}_{split.upper()}.ts" for split in ("train", "test")}
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            texts = {split: archive.read(name).decode() for split, name in names.items()}
    else:
        spec = importlib.util.find_spec("aeon")
        if spec is None or spec.origin is None:
            raise SystemExit(
                "ArrowHead ships inside aeon's wheel: `pip download --no-deps aeon==1.6.0 -d /tmp/aeon` and pass "
                "--wheel /tmp/aeon/aeon-1.6.0-py3-none-any.whl, or `pip install --no-deps aeon==1.6.0`"
            )
        root = Path(spec.origin).parent.parent
        texts = {split: (root / name).read_text() for split, name in names.items()}
    splits = {split: read_ts(text) for split, text in texts.items()}
    classes = sorted(set(splits["train"][1]))
    assert len(classes) == 3, f"{DATASET} should have 3 classes, found {classes}"
    return {split: (_znorm(X), np.searchsorted(classes, y)) for split, (X, y) in splits.items()}


def _znorm(X: np.ndarray) -> np.ndarray:
    std = X.std(axis=1, keepdims=True)
    return (X - X.mean(axis=1, keepdims=True)) / np.where(std == 0, 1.0, std)


class PaperSchedule:
    """Adam at 1e-3, halved after 50 epochs without a lower monitored loss, down to 1e-4."""

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=50, min_lr=1e-4)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def train_once(
    name: str, data: dict, epochs: int, seed: int, root: Path, model_args: dict | None = None
) -> tuple[float, np.ndarray, float]:
    """One network: (test accuracy, test probabilities, seconds).

    With ``--out``, the test probabilities are saved too, so networks trained in separate runs can be
    averaged into an ensemble afterwards.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from mlfactory import RunRecord
    from mlfactory.data.arrays import ArrayDataModule
    from mlfactory.registry import model_class

    L.seed_everything(seed, verbose=False)
    (X_train, y_train), (X_test, y_test) = data["train"], data["test"]
    batch_size = BATCH_SIZE.get(name, 16) or int(min(len(X_train) / 10, 64))
    # validation = the training split: checkpointing and the schedule watch the training loss, never the test
    train = (X_train[:, :, None], y_train)
    datamodule = ArrayDataModule(train, train, (X_test[:, :, None], y_test), batch_size=batch_size, eval_batch_size=256)
    cls = model_class(name)
    model = type(f"Paper{cls.__name__}", (PaperSchedule, cls), {})(**(model_args or {}))
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=TensorBoardLogger(str(root), name=name),
        callbacks=[RunRecord(importance_samples=0), ModelCheckpoint(monitor="val_loss", filename="best")],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    started = time.time()
    trainer.fit(model, datamodule=datamodule)  # RunRecord leaves the best checkpoint's weights in the model
    seconds = time.time() - started
    model.eval()
    with torch.inference_mode():
        probs = model(torch.from_numpy(X_test[:, :, None].astype(np.float32))).softmax(dim=-1).numpy()
    recorded = json.loads((Path(trainer.log_dir) / "metrics" / "evaluation_metrics.json").read_text())
    accuracy = float((probs.argmax(axis=1) == y_test).mean())
    assert abs(accuracy - recorded["test"]["accuracy"]) < 1e-6, "the run record disagrees with the direct prediction"
    return accuracy, probs, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", help="a downloaded aeon wheel holding the UCR data; unset = an installed aeon")
    parser.add_argument(
        "--models", nargs="+", default=["inceptiontime", "resnet1d"], choices=sorted([*PAPER_ACCURACY, *UNPUBLISHED])
    )
    parser.add_argument("--model-args", default="{}", help="JSON of model arguments, e.g. '{\"channels\": null}'; "
                        "over the paper's network where the defaults differ (inceptiontime's sizes, resnet1d's width)")
    parser.add_argument("--defaults", action="store_true",
                        help="start from the model's defaults instead of the paper's network (inceptiontime, resnet1d)")
    parser.add_argument("--runs", type=int, default=5, help="networks per model")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first network; the next add 1 each")
    parser.add_argument("--epochs", type=int, default=1500, help="the papers train 1500 epochs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    parser.add_argument("--root", default="lightning_logs/tsc_reference", help="where the run records go")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load(args.wheel)
    y_test = data["test"][1]
    results = {}
    for name in args.models:
        seeds = range(args.first_seed, args.first_seed + args.runs)
        model_args = {**({} if args.defaults else PAPER_ARGS.get(name, {})), **json.loads(args.model_args)}
        runs = [train_once(name, data, args.epochs, seed, Path(args.root), model_args) for seed in seeds]
        accuracies = [accuracy for accuracy, _, _ in runs]
        ensemble = float((np.mean([probs for _, probs, _ in runs], axis=0).argmax(axis=1) == y_test).mean())
        results[name] = {
            "dataset": DATASET,
            "epochs": args.epochs,
            "seeds": list(seeds),
            "accuracies": accuracies,
            "mean": float(np.mean(accuracies)),
            "std": float(np.std(accuracies)),
            "ensemble_of_runs": ensemble,
            "test_probabilities": [probs.tolist() for _, probs, _ in runs],
            "seconds_per_run": float(np.mean([seconds for _, _, seconds in runs])),
            "model_args": model_args,
            "paper": PAPER_ACCURACY.get(name, float("nan")),
            "paper_source": PAPER_SOURCE.get(name, "no published ArrowHead figure"),
        }
        r = results[name]
        print(
            f"{name:14s} {DATASET}: accuracy {r['mean']:.4f} +- {r['std']:.4f} over {args.runs} networks "
            f"(ensemble {ensemble:.4f}); paper {r['paper']:.4f} [{r['paper_source']}]; "
            f"{r['seconds_per_run']:.0f} s per network",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
