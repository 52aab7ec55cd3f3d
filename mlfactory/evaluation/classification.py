"""Classification metrics over the three classes down / neutral / up."""

from __future__ import annotations

import numpy as np

from mlfactory.data.contract import CLASS_NAMES, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(3, 3) counts: row = true class, column = predicted class."""
    return np.bincount(NUM_CLASSES * y_true + y_pred, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def log_loss(probs: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Sample-weighted mean of ``-log p(true class)``, probabilities clipped at 1e-7."""
    picked = np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    weights = np.ones(len(y_true)) if weights is None else weights
    return float(-(weights * np.log(picked)).sum() / weights.sum())


def direction_auc(probs: np.ndarray, y_true: np.ndarray) -> float | None:
    """How well ``P(up) - P(down)`` ranks the up samples above the down ones (ROC AUC; neutral rows left out).

    0.5 is chance. It separates knowing the direction from knowing whether a barrier is hit at all,
    so it is the score the leak canary watches (docs/metrics.md). None without both up and down rows.
    """
    from sklearn.metrics import roc_auc_score

    down, up = CLASS_NAMES.index("down"), CLASS_NAMES.index("up")
    directional = (y_true == down) | (y_true == up)
    if not (y_true[directional] == up).any() or not (y_true[directional] == down).any():
        return None
    score = probs[directional, up] - probs[directional, down]
    return float(roc_auc_score(y_true[directional] == up, score))


def classification_report(probs: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Accuracy, balanced accuracy, macro F1, weighted log loss, direction AUC, per-class precision/recall,
    confusion matrix.

    Balanced accuracy is the mean recall over the classes present in ``y_true``; precision of a class
    that is never predicted is 0, as in scikit-learn's ``zero_division=0``.
    """
    y_pred = probs.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    recall = np.divide(hits, support, out=np.zeros(NUM_CLASSES), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(NUM_CLASSES), where=precision + recall > 0)
    present = support > 0
    return {
        "n_samples": int(len(y_true)),
        "accuracy": float(hits.sum() / max(len(y_true), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "log_loss": log_loss(probs, y_true, weights),
        "direction_auc": direction_auc(probs, y_true),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion_matrix": matrix.tolist(),
    }
