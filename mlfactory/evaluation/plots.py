"""Figures written beside a run's numbers: confusion matrices, reliability diagrams, importances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlfactory.data.container import CLASS_NAMES


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(matrix: list[list[int]], title: str) -> Any:
    """Counts with row-normalised shading: row = true class, column = predicted class."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASS_NAMES)):
        for j in range(len(CLASS_NAMES)):
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=8)
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_yticks(range(3), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability_figure(report: dict, title: str) -> Any:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    plt = _pyplot()
    confidence = np.asarray(report["bin_confidence"], dtype=float)
    accuracy = np.asarray(report["bin_accuracy"], dtype=float)
    counts = np.asarray(report["bin_count"])
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    filled = counts > 0
    ax.plot(confidence[filled], accuracy[filled], marker="o")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (predicted class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}  ECE={report['expected_calibration_error']:.3f}")
    fig.tight_layout()
    return fig


def importance_figure(names: list[str], values: np.ndarray, method: str, top: int = 25) -> Any:
    plt = _pyplot()
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * len(order) + 1.2))
    ax.barh([names[i] for i in order], values[order])
    ax.set_xlabel(method)
    ax.set_title("feature importance")
    fig.tight_layout()
    return fig


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
