"""Metrics logged while training, the same for every family (the run record's are in evaluation/)."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mlfactory.data.contract import NUM_CLASSES


def classification_metrics(prefix: str = "") -> MetricCollection:
    """Accuracy, balanced accuracy (mean recall over classes) and macro F1 over the three classes."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(NUM_CLASSES, average="micro"),
            "balanced_accuracy": MulticlassAccuracy(NUM_CLASSES, average="macro"),
            "f1_macro": MulticlassF1Score(NUM_CLASSES, average="macro"),
        },
        prefix=prefix,
    )


def weighted_nll(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sample-weighted mean negative log-likelihood of ``target`` under ``probs``: the log loss."""
    picked = probs.gather(1, target.unsqueeze(1)).squeeze(1).clamp_min(1e-7)
    return -(weight * picked.log()).sum() / weight.sum().clamp_min(1e-12)

