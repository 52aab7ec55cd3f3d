"""Feature importance: the library's own gain where a model has one, permutation importance otherwise."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from mlfactory.data.windows import SequenceDataset, TabularDataset, collate_batch
from mlfactory.evaluation.classification import log_loss
from mlfactory.models.base import predict_batches


PREDICTION_BUDGET = 200_000  # samples predicted for permutation importance, all features together


def feature_importance(module: Any, datamodule: Any, max_samples: int = 2000, seed: int = 0) -> dict | None:
    """``{"method", "features", "importance"}`` for ``module``, or None when it has no importance.

    A model that defines ``native_importance()`` (boosting: total gain per feature) reports that.
    Others get permutation importance on the validation split: the rise in log loss when one
    feature's column is shuffled across rows (so whole windows see the shuffled values), on at most
    ``max_samples`` samples (fewer when there are many features: 200,000 predictions in all), one
    shuffle per feature.
    """
    container = datamodule.container
    native = getattr(module, "native_importance", None)
    values = native() if callable(native) else None
    if values is not None:
        return {"method": "gain", "features": container.feature_names, "importance": np.asarray(values, float)}
    if max_samples <= 0 or datamodule.view() == "multires":  # raw bars, not feature columns, to permute
        return None
    # one baseline and one shuffled pass per feature: cap the total number of predicted samples
    max_samples = max(1, min(max_samples, PREDICTION_BUDGET // (container.n_features + 1)))
    return {
        "method": "permutation (val log-loss increase)",
        "features": container.feature_names,
        "importance": permutation_importance(module, datamodule, max_samples, seed),
    }


def permutation_importance(module: Any, datamodule: Any, max_samples: int, seed: int) -> np.ndarray:
    split = datamodule.container.split("val")
    sequence = datamodule.view() == "sequence"
    rows = split.window_end_rows(datamodule.seq_len) if sequence else np.arange(len(split))
    rng = np.random.default_rng(seed)
    if len(rows) > max_samples:
        rows = np.sort(rng.choice(rows, max_samples, replace=False))

    def loss(features: np.ndarray) -> float:
        data = dataclasses.replace(split, features=features)
        dataset = SequenceDataset(data, datamodule.seq_len, rows) if sequence else TabularDataset(data, rows)
        loader = DataLoader(dataset, batch_size=datamodule.eval_batch_size, collate_fn=collate_batch)
        probs = predict_batches(module, loader)["probs"].float().numpy()
        return log_loss(probs, split.labels[rows], split.weights[rows])

    baseline = loss(split.features)
    shuffled = split.features.copy()
    importance = np.zeros(split.features.shape[1])
    for j in range(split.features.shape[1]):
        original = shuffled[:, j].copy()
        shuffled[:, j] = rng.permutation(original)
        importance[j] = loss(shuffled) - baseline
        shuffled[:, j] = original
    return importance

