"""The scaler: fitted on the train rows only: per-feature ``center`` and ``scale``, applied as (x - center) / scale.

| kind | center | scale |
|---|---|---|
| ``robust`` (default) | median | interquartile range (q75 - q25) |
| ``standard`` | mean | standard deviation (ddof 0) |
| ``minmax`` | minimum | maximum - minimum |
| ``none`` | 0 | 1 |

A scale that is 0 or not finite (a constant feature) becomes 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlfactory.errors import DataError
from mlfactory.prepare import PrepareError

if TYPE_CHECKING:
    import torch


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
    """``kind`` if it names a scaler; otherwise an error listing them."""
    if kind not in SCALERS:
        raise PrepareError(f"unknown scaler {kind!r}; choose one of {', '.join(SCALERS)}")
    return kind


FORMULA = "(x - center) / scale"
_BLOCK_ROWS = 1024  # rows per float64 temporary in transform: bounds its memory


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature ``(x - center) / scale``: fitted by ``prepare`` on train rows, applied by the split writer,
    a bundle's predictor and its ONNX graph, so every one of them computes the same numbers.

    Args:
        kind: the scaler kind (``robust``, ``standard``, ``minmax``, ``none``; a bundle may say ``unknown``).
        center: (n_features,) float64.
        scale: (n_features,) float64, every value finite and positive.

    >>> scaler = Scaler.fit("minmax", [np.array([1.0, 3.0]), np.array([5.0, 5.0])])
    >>> scaler.transform(np.array([[2.0, 5.0]]))
    array([[0.5, 0. ]], dtype=float32)
    >>> Scaler.from_json(scaler.to_json()).scale.tolist()
    [2.0, 1.0]
    """

    kind: str
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, kind: str, columns: Iterable[np.ndarray]) -> "Scaler":
        """(center, scale) per feature from each feature's train values (float64, one array per feature).

        A scale that is 0 or not finite (a constant feature) becomes 1.
        """
        stats = np.array([SCALERS[check_kind(kind)](x) for x in columns], dtype=np.float64).reshape(-1, 2)
        center, scale = stats[:, 0], stats[:, 1]
        return cls(kind, center, np.where(np.isfinite(scale) & (scale > 0), scale, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(n, n_features) float32 ``(values - center) / scale``, computed in float64 and rounded once.

        ``values`` is (n, n_features) of any real dtype. The float64 temporary is a block of rows, so
        scaling a large input does not double its memory.
        """
        out = np.empty(values.shape, dtype=np.float32)
        block = np.empty((min(_BLOCK_ROWS, len(values)), values.shape[1]), dtype=np.float64)
        for start in range(0, len(values), _BLOCK_ROWS):
            part = block[: min(_BLOCK_ROWS, len(values) - start)]
            np.subtract(values[start : start + _BLOCK_ROWS], self.center, out=part)
            np.divide(part, self.scale, out=out[start : start + _BLOCK_ROWS], casting="same_kind")
        return out

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """float64 ``scaled * scale + center``: the unscaled values whose transform is ``scaled``."""
        return scaled * self.scale + self.center

    def torch_module(self) -> "torch.nn.Module":
        """The transform as a torch module with float32 buffers, for graphs that take unscaled input (ONNX)."""
        import torch

        return _torch_scaler_class()(torch.tensor(self.center, dtype=torch.float32),
                                     torch.tensor(self.scale, dtype=torch.float32))

    # --- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The scaler as a bundle records it: kind, formula and per-feature lists in feature order."""
        return {
            "kind": self.kind,
            "formula": FORMULA,
            "center": [float(c) for c in self.center],
            "scale": [float(s) for s in self.scale],
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "Scaler":
        """The inverse of :meth:`to_json`."""
        return cls(str(payload.get("kind", "unknown")), np.asarray(payload["center"], dtype=np.float64),
                   np.asarray(payload["scale"], dtype=np.float64))

    def to_metadata(self, features: Sequence[str]) -> dict[str, Any]:
        """The scaler's keys of ``scaling_metadata.json``: kind, statistics, features, center and scale by feature."""
        return {
            "scaler": self.kind,
            "scaler_statistics": DESCRIPTIONS[self.kind],
            "features": list(features),
            "center": {n: float(c) for n, c in zip(features, self.center)},
            "scale": {n: float(s) for n, s in zip(features, self.scale)},
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], features: Sequence[str]) -> "Scaler":
        """The scaler of ``features`` (in that order) from a parsed ``scaling_metadata.json``.

        Raises:
            DataError: the metadata has no per-feature center and scale, or lacks some of ``features``
                (the message says which; the caller adds which file).
        """
        center, scale = metadata.get("center"), metadata.get("scale")
        if not isinstance(center, dict) or not isinstance(scale, dict):
            raise DataError("has no per-feature 'center' and 'scale'")
        missing = [f for f in features if f not in center or f not in scale]
        if missing:
            raise DataError(f"has no center/scale for features {missing}")
        return cls(str(metadata.get("scaler", "unknown")), np.array([float(center[f]) for f in features]),
                   np.array([float(scale[f]) for f in features]))


@functools.cache
def _torch_scaler_class() -> type:
    """The module class behind :meth:`Scaler.torch_module`, defined on first use so that torch loads only then."""
    import torch

    class TorchScaler(torch.nn.Module):
        """``(x - center) / scale`` in float32, the buffers exported with the graph."""

        def __init__(self, center: torch.Tensor, scale: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("center", center)
            self.register_buffer("scale", scale)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.center) / self.scale

    return TorchScaler
