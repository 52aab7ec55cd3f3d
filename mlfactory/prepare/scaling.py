"""Scalers fitted on the train rows only: per-feature ``center`` and ``scale``, applied as (x - center) / scale.

| kind | center | scale |
|---|---|---|
| ``robust`` (default) | median | interquartile range (q75 - q25) |
| ``standard`` | mean | standard deviation (ddof 0) |
| ``minmax`` | minimum | maximum - minimum |
| ``none`` | 0 | 1 |

A scale that is 0 or not finite (a constant feature) becomes 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from mlfactory.prepare import PrepareError


def _robust(x: np.ndarray) -> tuple[float, float]:
    q25, median, q75 = np.percentile(x, [25, 50, 75])
    return float(median), float(q75 - q25)


def _standard(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x))


def _minmax(x: np.ndarray) -> tuple[float, float]:
    low = float(np.min(x))
    return low, float(np.max(x)) - low


def _none(x: np.ndarray) -> tuple[float, float]:
    return 0.0, 1.0


SCALERS: dict[str, Callable[[np.ndarray], tuple[float, float]]] = {
    "robust": _robust,
    "standard": _standard,
    "minmax": _minmax,
    "none": _none,
}
"""Scaler kinds: one function from a feature's train values to its (center, scale)."""

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "robust": {"center": "median", "scale": "q75 - q25"},
    "standard": {"center": "mean", "scale": "standard deviation (ddof 0)"},
    "minmax": {"center": "min", "scale": "max - min"},
    "none": {"center": "0", "scale": "1"},
}


def check_kind(kind: str) -> str:
    if kind not in SCALERS:
        raise PrepareError(f"unknown scaler {kind!r}; choose one of {', '.join(SCALERS)}")
    return kind


def fit(kind: str, columns: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per feature from each feature's train values (float64, one array per feature)."""
    stats = np.array([SCALERS[check_kind(kind)](x) for x in columns], dtype=np.float64).reshape(-1, 2)
    center, scale = stats[:, 0], stats[:, 1]
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return center, scale
