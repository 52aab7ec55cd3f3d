"""Prepare's recipe, carried by an inference bundle: from new raw bars to the features prepare computed.

A bundle that records the recipe (timeframes, bar rules, label and scaler settings, TA-Lib version)
and each feature's warm-up can predict from raw OHLCV bars: :meth:`Recipe.load` reads and repairs
them with prepare's own reader (``bars.load_bars``) and :meth:`Recipe.features` computes the features
with prepare's own ``features.symbol_features``: one data path, no second feature pipeline.

Warm-up (docs/inference.md, "Warm-up"): TA-Lib's exponential indicators (EMA, MACD, RSI, ADX, NATR,
ADOSC, ...) depend on every bar since the series began, so a value computed from the last W bars
differs from prepare's, which saw the whole series, until the start-up transient has decayed.
:func:`measure_warmup` measures, per feature, the number of earlier bars after which a series cut at
an arbitrary bar gives prepare's float32 value to float32 precision (:func:`_agree`), on the training bars.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlfactory.prepare import PrepareError
from mlfactory.prepare import timeframes as tfs

RECIPE_VERSION = 1
WARMUP_PROBES = 3
"""Cut points of the warm-up measurement: the series is cut at 10%, 20% and 30% of its bars."""
MAX_MEASURED_BARS = 250_000
"""The measurement reads at most this many bars of the longest symbol (from its first): its cost stays bounded."""
WARMUP_METHOD = (
    "per feature, the earlier bars after which features of the training bars cut at 10%, 20% and 30% of the "
    "longest symbol (its first 250,000 at most) agree with prepare's within two float32 ulps of the larger value (or of the feature's median "
    "size), plus one bin of the feature's timeframe"
)


@dataclass(frozen=True)
class Recipe:
    """How ``prepare`` turned bars into features, as a bundle records it.

    Attributes:
        base_resolution: the bars' resolution (``1min``).
        timeframes: every timeframe features were built on, base first (``["1min", "5min", ...]``).
        fill_gaps: the gap-filling limit prepare used (filled bars feed indicators, never become samples).
        extra: the rest, recorded for people and checks: horizons, label and scaler settings, versions.
    """

    base_resolution: str
    timeframes: tuple[str, ...]
    fill_gaps: int
    extra: Mapping[str, Any]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> "Recipe | None":
        """The recipe in a ``scaling_metadata.json`` written by ``prepare``; None when it has none (other data)."""
        if not metadata or "timeframes" not in metadata or "base_resolution" not in metadata:
            return None
        source = metadata.get("input") if isinstance(metadata.get("input"), Mapping) else {}
        return cls(
            base_resolution=str(metadata["base_resolution"]),
            timeframes=tuple(str(t) for t in metadata["timeframes"]),
            fill_gaps=int(source.get("fill_gaps", 5)),
            extra={
                "horizons": metadata.get("horizons"),
                "labels": metadata.get("labels"),
                "scaler": metadata.get("scaler"),
                "embargo_bars": metadata.get("embargo_bars"),
                "calendar": source.get("calendar"),
                "talib_version": metadata.get("talib_version"),
                "prepared_with": metadata.get("mlfactory_version"),
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The recipe as ``bundle.json`` holds it under ``input.recipe``."""
        return {"version": RECIPE_VERSION, "base_resolution": self.base_resolution, "timeframes": list(self.timeframes),
                "fill_gaps": self.fill_gaps, **self.extra}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "Recipe":
        """The inverse of :meth:`to_json`."""
        known = {"version", "base_resolution", "timeframes", "fill_gaps"}
        return cls(str(payload["base_resolution"]), tuple(str(t) for t in payload["timeframes"]),
                   int(payload["fill_gaps"]), {k: v for k, v in payload.items() if k not in known})

    @property
    def base_ns(self) -> int:
        return tfs.parse(self.base_resolution)

    @property
    def timeframes_ns(self) -> list[int]:
        """The timeframes in nanoseconds, base first, as ``prepare`` resolved them."""
        return [tfs.parse(t) for t in self.timeframes]

    @property
    def feature_names(self) -> list[str]:
        from mlfactory.prepare.features import feature_names

        return feature_names(self.timeframes_ns)

    def check_talib(self, where: str) -> None:
        """Warn when the installed TA-Lib is not the one prepare ran with: indicator values may differ."""
        recorded = self.extra.get("talib_version")
        import talib

        if recorded and str(recorded) != str(talib.__version__):
            warnings.warn(f"{where} was prepared with TA-Lib {recorded}; {talib.__version__} is installed. Features "
                          "computed from raw bars may differ from the training data's.", stacklevel=3)

    def load(self, source: pd.DataFrame | str | os.PathLike[str]):
        """Raw bars (a DataFrame, a CSV/parquet file or a directory) read, checked and repaired as prepare did.

        The bars must be on the recipe's resolution; gaps are filled with prepare's ``fill_gaps``.
        Returns ``prepare.bars.Bars``.

        Raises:
            PrepareError: the bars are unreadable or wrong (what, where, what to do), or of another resolution.
        """
        from mlfactory.prepare.bars import load_bars

        return load_bars(source, fill_gaps=self.fill_gaps, resolution_ns=self.base_ns)

    def features(self, bars: Any, symbol: int) -> np.ndarray:
        """(n_features, n_bars) float32 features of symbol ``symbol`` of ``bars``: prepare's own computation."""
        from mlfactory.prepare.features import symbol_features

        rows = bars.block(symbol)
        values, _ = symbol_features(bars.times[rows], bars.open[rows], bars.high[rows], bars.low[rows],
                                    bars.close[rows], bars.volume[rows], timeframes_ns=self.timeframes_ns)
        return values


def measure_warmup(bars: Any, recipe: Recipe, probes: int = WARMUP_PROBES) -> dict[str, Any]:
    """Each feature's warm-up: earlier bars after which a cut series gives prepare's values to float32 precision.

    ``bars`` are the training bars as prepare kept them (``bars.parquet``). The longest symbol's features
    are computed once from its first bar (prepare's values) and again from bars cut at 10%, 20%, ...;
    a feature's warm-up is the last row of a cut series whose value differs (:func:`_agree`; NaN differs
    unless prepare's is NaN too), plus one, plus one bin of its timeframe (where the cut falls inside a
    bin does not matter then). A feature still differing past half a cut series is unmeasured: its
    warm-up is recorded as the whole cut series and ``unmeasured`` names it.

    Returns:
        ``{"bars": {feature: bars}, "max_bars": int, "unmeasured": [...], "method": str, "measured_on": {...}}``.
    """
    from mlfactory.prepare.features import timeframe_slices

    if len(bars.symbols) == 0:
        raise PrepareError("no bars to measure the features' warm-up on")
    lengths = np.diff(bars.bounds)
    symbol = int(np.argmax(lengths))
    n = min(int(lengths[symbol]), MAX_MEASURED_BARS)
    names = recipe.feature_names
    block = bars.block(symbol)
    # every feature is causal, so the first n bars give prepare's values on their rows: the cost is bounded
    full = recipe.features(_cut(bars, block.start, block.start + n), 0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature has no typical size
        typical = np.nan_to_num(np.nanmedian(np.abs(full), axis=1), nan=0.0)[:, None]
    need = np.zeros(len(names), dtype=np.int64)
    shortest = n
    frames = recipe.timeframes_ns
    with np.errstate(invalid="ignore"):
        for k in range(1, probes + 1):
            cut = n * k // (10 if probes < 10 else probes + 1)
            if cut < 1 or n - cut < 2:
                continue
            part = _cut(bars, block.start + cut, block.start + n)
            values = recipe.features(part, 0)
            reference = full[:, cut:]
            same = _agree(values, reference, typical)
            differs = ~same
            last = np.where(differs.any(axis=1), differs.shape[1] - np.argmax(differs[:, ::-1], axis=1), 0)
            need = np.maximum(need, last)
            shortest = min(shortest, n - cut)
    for i, (_, columns) in enumerate(timeframe_slices(frames)):
        need[columns] += frames[i] // frames[0] - 1 + (1 if i else 0)
    unmeasured = [name for name, bars_needed in zip(names, need) if bars_needed > shortest // 2]
    for j, name in enumerate(names):
        if name in unmeasured:
            need[j] = max(int(need[j]), shortest)
    return {
        "bars": {name: int(v) for name, v in zip(names, need)},
        "max_bars": int(need.max()) if len(need) else 0,
        "unmeasured": unmeasured,
        "method": WARMUP_METHOD,
        "measured_on": {"symbol": bars.symbols[symbol], "bars": n, "shortest_cut": int(shortest)},
    }


FLOAT32_TOLERANCE = 2.0**-22
"""Two float32 units in the last place: values closer than this (relative) agree to float32 precision."""


def _agree(values: np.ndarray, reference: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """Where ``values`` equal ``reference`` to float32 precision: within two float32 ulps of the larger of the
    two and the feature's typical size (running sums such as TA-Lib's MFI and the A/D line carry
    rounding from the series' first bar in their last bits, so bit equality never comes), or both NaN."""
    a, b = values.astype(np.float64), reference.astype(np.float64)
    size = np.maximum(np.maximum(np.abs(a), np.abs(b)), typical)
    return (np.abs(a - b) <= FLOAT32_TOLERANCE * size) | (np.isnan(a) & np.isnan(b))


def required_history(warmup: Mapping[str, Any], features: Sequence[str]) -> int:
    """Earlier base bars a row needs for every one of ``features`` to equal prepare's value."""
    per_feature = warmup.get("bars", {})
    return max((int(per_feature.get(f, warmup.get("max_bars", 0))) for f in features), default=0)


def _cut(bars: Any, start: int, stop: int):
    """Rows ``start:stop`` of ``bars`` as a one-symbol ``Bars``."""
    from mlfactory.prepare.bars import Bars

    return Bars(times=bars.times[start:stop], open=bars.open[start:stop], high=bars.high[start:stop],
                low=bars.low[start:stop], close=bars.close[start:stop], volume=bars.volume[start:stop],
                filled=bars.filled[start:stop], symbols=("cut",),
                bounds=np.array([0, stop - start], dtype=np.int64), resolution_ns=bars.resolution_ns)
