"""How well predicted probabilities match observed frequencies."""

from __future__ import annotations

import numpy as np


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> dict:
    """Top-label reliability: per confidence bin, the mean confidence, the accuracy and the count.

    The expected calibration error is ``sum_b (n_b / n) * |accuracy_b - confidence_b|`` over equal-width
    bins of the predicted class's probability (Guo et al., 2017).
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    filled = counts > 0
    ece = float((counts[filled] / len(y_true) * np.abs(accuracy[filled] - mean_confidence[filled])).sum())
    return {
        "expected_calibration_error": ece,
        "n_bins": n_bins,
        "bin_confidence": np.where(filled, mean_confidence, np.nan).tolist(),
        "bin_accuracy": np.where(filled, accuracy, np.nan).tolist(),
        "bin_count": counts.tolist(),
    }
