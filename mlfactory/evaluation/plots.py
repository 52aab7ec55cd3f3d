"""Figures written beside a run's numbers: confusion matrices, reliability diagrams, importances, equity curves.

Every figure's title names what it shows, then the run: model, run id and horizon
(:func:`run_label`), so a PNG or a TensorBoard image read on its own says where it came from.
"""

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


def run_label(model: str, run: str, horizon: int) -> str:
    """The second line of every title: ``xgboost · run 20261202-131400-ab12cd · horizon 5``."""
    return f"{model} · run {run} · horizon {horizon}"


def confusion_figure(matrix: list[list[int]], title: str) -> Any:
    """Counts with row-normalised shading: row = true class, column = predicted class."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 3.9))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASS_NAMES)):
        for j in range(len(CLASS_NAMES)):
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=8)
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_yticks(range(3), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def reliability_figure(report: dict, title: str) -> Any:
    """Accuracy against confidence per bin (the diagonal is perfect calibration), and below it the
    number of samples in each bin: a bin of a handful of samples says little."""
    plt = _pyplot()
    confidence = np.asarray(report["bin_confidence"], dtype=float)
    accuracy = np.asarray(report["bin_accuracy"], dtype=float)
    counts = np.asarray(report["bin_count"])
    n_bins = len(counts)
    edges = np.linspace(0, 1, n_bins + 1)
    fig, (ax, ax_counts) = plt.subplots(2, 1, figsize=(4.6, 4.8), sharex=True, height_ratios=(3, 1.3))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    filled = counts > 0
    ax.plot(confidence[filled], accuracy[filled], marker="o", label="this model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    head, newline, rest = title.partition("\n")
    ax.set_title(f"{head}, ECE={report['expected_calibration_error']:.3f}{newline}{rest}", fontsize=9)
    ax_counts.bar(edges[:-1], counts, width=1 / n_bins, align="edge", color="tab:blue", alpha=0.5, edgecolor="white")
    for left, count in zip(edges[:-1], counts):
        if count:
            ax_counts.text(left + 0.5 / n_bins, count, str(int(count)), ha="center", va="bottom", fontsize=6)
    ax_counts.set_ylim(0, max(int(counts.max()), 1) * 1.3)
    ax_counts.set_ylabel("samples")
    ax_counts.set_xlabel("confidence (predicted class probability)")
    fig.tight_layout()
    return fig


def importance_figure(names: list[str], values: np.ndarray, method: str, title: str = "feature importance",
                      top: int = 25) -> Any:
    """The ``top`` features by importance, largest first."""
    plt = _pyplot()
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * len(order) + 1.4))
    ax.barh([names[i] for i in order], values[order])
    ax.axvline(0.0, color="grey", linewidth=0.8)  # permutation importance can be negative: noise
    ax.set_xlabel(method)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def equity_figure(curve: Any, title: str) -> Any:
    """Cumulative log return of the predicted signal and of holding every symbol long, with the drawdown.

    ``curve`` is :func:`mlfactory.evaluation.report.equity_curve`'s frame (non-overlapping periods,
    the same the Sharpe ratio and maximum drawdown are computed on).
    """
    plt = _pyplot()
    fig, (ax, ax_dd) = plt.subplots(2, 1, figsize=(6.4, 4.6), sharex=True, height_ratios=(3, 1.2))
    times = curve.index
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.plot(times, curve["strategy"], label="signal (long up, short down, flat neutral)", color="tab:blue")
    ax.plot(times, curve["long_all"], label="long every symbol (reference)", color="tab:grey", linewidth=1)
    ax.set_ylabel("cumulative log return")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    ax_dd.fill_between(times, -curve["drawdown"], 0.0, color="tab:red", alpha=0.4, step="post")
    ax_dd.set_ylabel("drawdown")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


DPI = 110


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def render(fig: Any) -> np.ndarray:
    """The figure drawn once, as an (height, width, 3) uint8 image, and released.

    One drawing serves both the PNG (:func:`write_png`) and TensorBoard's image (``add_image`` with
    ``dataformats="HWC"``); drawing it twice, as ``savefig`` plus ``add_figure`` do, costs twice.
    """
    fig.set_dpi(DPI)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    _pyplot().close(fig)
    return image


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write an image from :func:`render` as PNG."""
    from matplotlib.image import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, image)
    return path
