"""Feature importance: the library's own gain where a model has one, permutation importance otherwise."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from mlfactory.data.windows import collate_batch
from mlfactory.evaluation.classification import log_loss
from mlfactory.models.base import predict_batches


PREDICTION_BUDGET = 200_000  # samples predicted for permutation importance, all features together


def feature_importance(module: Any, datamodule: Any, max_samples: int = 2000, seed: int = 0) -> dict | None:
    """``{"method", "features", "importance"}`` for ``module``, or None when it has no importance.

    A model that ``supports_importance`` (boosting: total gain per feature) reports its own.
    Others get permutation importance on the validation split: the rise in log loss when one
    feature's column is shuffled across rows (so whole windows see the shuffled values), on at most
    ``max_samples`` samples (fewer when there are many features: 200,000 predictions in all), one
    shuffle per feature.
    """
    container = datamodule.container
    values = module.native_importance() if module.supports_importance else None
    if values is not None:
        return {"method": "gain", "features": container.feature_names, "importance": np.asarray(values, float)}
    if max_samples <= 0 or not module.input_view(datamodule.seq_len).reads_feature_columns:  # raw bars to permute
        return None
    # one baseline and one shuffled pass per feature: cap the total number of predicted samples
    max_samples = max(1, min(max_samples, PREDICTION_BUDGET // (container.n_features + 1)))
    return {
        "method": "permutation (val log-loss increase)",
        "features": container.feature_names,
        "importance": permutation_importance(module, datamodule, max_samples, seed),
    }


def permutation_importance(module: Any, datamodule: Any, max_samples: int, seed: int) -> np.ndarray:
    """The rise in val log loss per shuffled feature column, on at most ``max_samples`` of the model's val samples.

    The samples are the model's own view of the val rows the data module serves; the shuffled split
    replaces the container's in that same view, so windows see the shuffled values.
    """
    container = datamodule.container
    split = container.split("val")
    view = module.input_view(datamodule.seq_len)
    rows = datamodule.sample_rows("val", view)
    rng = np.random.default_rng(seed)
    if len(rows) > max_samples:
        rows = np.sort(rng.choice(rows, max_samples, replace=False))

    def loss(features: np.ndarray) -> float:
        dataset = view.dataset(container, "val", rows, split_data=dataclasses.replace(split, features=features))
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
