"""Feature importance: the library's own gain where a model has one, permutation importance otherwise."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from mlfactory.data.windows import collate_batch
from mlfactory.evaluation.classification import log_loss
from mlfactory.models.base import predict_batches
from mlfactory.models.estimator import progress_bar


PREDICTION_BUDGET = 200_000  # samples predicted for permutation importance, all features together
MIN_SAMPLES = 200
"""Fewest val samples a time budget may cut permutation importance to: below it the ranking is noise."""
PILOT_SAMPLES = 256
"""Samples of the timed pilot pass that measures the model's prediction speed for the time budget."""


def feature_importance(
    module: Any,
    datamodule: Any,
    max_samples: int = 2000,
    seed: int = 0,
    seconds: float | None = None,
    progress: bool = False,
) -> dict | None:
    """``{"method", "features", "importance", "samples"}`` for ``module``, or None when it has no importance.

    A model that ``supports_importance`` (boosting: total gain per feature) reports its own
    (``samples`` is None). Others get permutation importance on the validation split: the rise in
    log loss when one feature's column is shuffled across rows (so whole windows see the shuffled
    values), one shuffle per feature, on at most ``max_samples`` samples (0 skips it), fewer when
    there are many features (200,000 predictions in all) or when ``seconds`` is given: a timed pilot
    pass measures the model's speed, and the samples are cut so that all passes fit in ``seconds``
    (never below 200). ``progress`` shows a bar over the features.
    """
    container = datamodule.container
    values = module.native_importance() if module.supports_importance else None
    if values is not None:
        return {"method": "gain", "features": container.feature_names, "importance": np.asarray(values, float),
                "samples": None}
    if max_samples <= 0 or not module.input_view(datamodule.seq_len).reads_feature_columns:  # raw bars to permute
        return None
    # one baseline and one shuffled pass per feature: cap the total number of predicted samples
    max_samples = max(1, min(max_samples, PREDICTION_BUDGET // (container.n_features + 1)))
    importance, samples = permutation_importance(module, datamodule, max_samples, seed, seconds, progress)
    return {
        "method": "permutation (val log-loss increase)",
        "features": container.feature_names,
        "importance": importance,
        "samples": samples,
    }


def permutation_importance(
    module: Any,
    datamodule: Any,
    max_samples: int,
    seed: int,
    seconds: float | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """The rise in val log loss per shuffled feature column, and the number of val samples it was measured on.

    The samples are at most ``max_samples`` of the model's own view of the val rows the data module
    serves; the shuffled split replaces the container's in that same view, so windows see the
    shuffled values. With ``seconds``, the samples are cut to what fits that time (see
    :func:`feature_importance`).
    """
    container = datamodule.container
    split = container.split("val")
    view = module.input_view(datamodule.seq_len)
    rows = datamodule.sample_rows("val", view)
    rng = np.random.default_rng(seed)
    if len(rows) > max_samples:
        rows = np.sort(rng.choice(rows, max_samples, replace=False))
    n_features = split.features.shape[1]

    def loss(features: np.ndarray, rows: np.ndarray) -> float:
        dataset = view.dataset(container, "val", rows, split_data=dataclasses.replace(split, features=features))
        loader = DataLoader(dataset, batch_size=datamodule.eval_batch_size, collate_fn=collate_batch)
        probs = predict_batches(module, loader)["probs"].float().numpy()
        return log_loss(probs, split.labels[rows], split.weights[rows])

    if seconds is not None and len(rows) > MIN_SAMPLES:
        rows = _affordable_rows(rows, lambda subset: loss(split.features, subset), n_features + 1, seconds, rng)
    baseline = loss(split.features, rows)
    shuffled = split.features.copy()
    importance = np.zeros(n_features)
    with progress_bar(n_features, f"permutation importance ({len(rows)} val samples)", "feature", progress) as bar:
        for j in range(n_features):
            original = shuffled[:, j].copy()
            shuffled[:, j] = rng.permutation(original)
            importance[j] = loss(shuffled, rows) - baseline
            shuffled[:, j] = original
            bar.update(1)
    return importance, int(len(rows))


def _affordable_rows(rows: np.ndarray, predict: Any, passes: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """``rows``, or a sorted random subset of them (at least ``MIN_SAMPLES``) whose ``passes`` passes fit ``seconds``.

    The speed comes from one timed pass of ``predict`` over a pilot subset; its fixed costs (loader,
    first batch) make the estimate err on the slow side.
    """
    pilot = rows[:: max(1, len(rows) // PILOT_SAMPLES)][:PILOT_SAMPLES]
    started = time.perf_counter()
    predict(pilot)
    per_sample = (time.perf_counter() - started) / len(pilot)
    affordable = int(seconds / (per_sample * passes))
    if affordable >= len(rows):
        return rows
    return np.sort(rng.choice(rows, max(affordable, MIN_SAMPLES), replace=False))
