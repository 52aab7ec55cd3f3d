"""From raw OHLCV bars to a bundle's predictions, through prepare's own code.

The bundle's recipe (``input.recipe`` in bundle.json) says how ``prepare`` read the bars and built the
features; :class:`mlfactory.prepare.recipe.Recipe` reads and repairs new bars with prepare's reader and
computes the features with prepare's ``symbol_features``, then the bundle's scaler and model predict as
they do on a feature table (:mod:`mlfactory.inference.predictor`). A multi-resolution bundle builds each
timeframe's window of bins with :class:`mlfactory.data.multires.MultiResolutionBars`, as training did.

One prediction per real (not gap-filled) base bar, sorted by symbol and time. A bar is predicted only
when the input holds enough bars before it (``ModelBundle.required_history``, plus ``seq_len - 1``
rows for sequence models): every feature then equals prepare's to float32 precision (the measured
warm-up). Other bars get ``has_history = False`` and no probabilities, never a silently wrong value.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlfactory.errors import BundleError
from mlfactory.inference.predictor import output_frame

if TYPE_CHECKING:
    from mlfactory.prepare.bars import Bars

ModelBundle = Any
"""A loaded :class:`mlfactory.inference.bundle.ModelBundle` (named, not imported: the bundle module imports this one)."""

NO_RECIPE = (
    "{where} holds no recipe of prepare (it was written before bundles carried the recipe, or trained "
    "on data not made by mlfactory prepare), so it cannot predict from raw bars; raw-bar prediction needs a bundle "
    "written by this version from prepared data (refit the run), or give it a table of the features bundle.json lists"
)


def predict_bars(bundle: "ModelBundle", source: "pd.DataFrame | str | os.PathLike[str] | Bars",
                 batch_size: int = 2048) -> pd.DataFrame:
    """Predictions for every real bar of ``source`` (raw OHLCV bars, as ``prepare`` reads them).

    Columns as :meth:`ModelBundle.predict`; rows sorted by symbol (first appearance), then time.

    Raises:
        BundleError: the bundle has no recipe (written before raw-bar bundles, or from other data).
        PrepareError: the bars are unreadable or wrong (what, where, what to do), or of another resolution.
    """
    recipe = bundle.recipe
    bars = source if hasattr(source, "bounds") else recipe.load(source)
    rows, probs, has_history = predict_arrays(bundle, bars, batch_size)
    return output_frame(bars.times[rows], _symbol_column(bars, rows), probs, has_history, bundle.class_names,
                        bundle.class_labels)


def predict_arrays(bundle: "ModelBundle", bars: "Bars", batch_size: int = 2048
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The array form of :func:`predict_bars` on bars already read (``recipe.load``): the real bars' row numbers
    in ``bars``, their (n, 3) float32 probabilities (NaN without history) and ``has_history``."""
    bundle.recipe.check_talib(str(bundle.path))
    if bundle.input_kind == "multires":
        return _multires_predictions(bundle, bars, batch_size)
    return _feature_predictions(bundle, bars, batch_size)


def _feature_predictions(bundle: "ModelBundle", bars: "Bars", batch_size: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    recipe = bundle.recipe
    names = recipe.feature_names
    position = {name: j for j, name in enumerate(names)}
    missing = [f for f in bundle.features if f not in position]
    if missing:
        raise BundleError(f"{bundle.path}: the model reads features the recipe does not build ({missing[:5]}); "
                          "the bundle is damaged")
    columns = np.array([position[f] for f in bundle.features], dtype=np.int64)
    need = bundle.required_history
    real_rows, ready_rows, blocks = [], [], []
    offset = 0
    for i in range(len(bars.symbols)):
        rows = bars.block(i)
        n = rows.stop - rows.start
        real = ~bars.filled[rows]
        if n >= 2:
            values = recipe.features(bars, i)[columns].T  # (n, k) float32, unscaled: prepare's numbers
            ready = real & (np.arange(n) >= need) & np.isfinite(values).all(axis=1)
            blocks.append(values[ready])
        else:  # one bar has no indicator
            ready = np.zeros(n, dtype=bool)
        local = np.flatnonzero(real)
        real_rows.append(local + rows.start)
        ready_rows.append(np.flatnonzero(ready[local]) + offset)
        offset += len(local)
    real_rows = np.concatenate(real_rows) if real_rows else np.zeros(0, np.int64)
    ready_at = np.concatenate(ready_rows) if ready_rows else np.zeros(0, np.int64)
    times = bars.times[real_rows]
    probs = np.full((len(real_rows), 3), np.nan, dtype=np.float32)
    has_history = np.zeros(len(real_rows), dtype=bool)
    if len(ready_at):
        values = np.concatenate(blocks)  # unscaled float32, every value finite
        # the bundle's scaler, as on a feature table (predictor.feature_matrix): the split files' numbers
        x = bundle.scaler.transform(values) if bundle.scaler is not None else np.ascontiguousarray(values)
        codes = np.searchsorted(bars.bounds, real_rows[ready_at], side="right") - 1
        symbols = np.asarray(bars.symbols, dtype=object)[codes]
        probs[ready_at], has_history[ready_at] = bundle.predictor(batch_size=batch_size).predict_inputs(
            x, times[ready_at], symbols)
    return real_rows, probs, has_history


def _multires_predictions(bundle: "ModelBundle", bars: "Bars", batch_size: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from mlfactory.data.multires import MultiResolutionBars

    spec = bundle.spec["input"]["multires"]
    windows = MultiResolutionBars.from_bars(bars, spec["timeframes"], spec["lookback"])
    real_rows = np.flatnonzero(~bars.filled)
    ready = windows.has_history(real_rows)
    probs = np.full((len(real_rows), 3), np.nan, dtype=np.float32)
    targets = np.flatnonzero(ready)
    for start in range(0, len(targets), batch_size):
        chunk = targets[start : start + batch_size]
        probs[chunk] = bundle.predict_proba(windows.gather(real_rows[chunk]))
    return real_rows, probs, ready


def _symbol_column(bars: "Bars", rows: np.ndarray) -> pd.Series:
    codes = np.searchsorted(bars.bounds, rows, side="right") - 1
    return pd.Series(np.asarray(bars.symbols, dtype=object)[codes], dtype=object).astype(str)


def recipe_spec(container: Any, view: Any) -> dict[str, Any]:
    """``input.recipe`` and ``input.warmup`` for bundle.json: prepare's recipe and each feature's measured warm-up.

    Empty when the training data was not made by ``prepare`` (no recipe in scaling_metadata.json, or no
    bars.parquet to measure the warm-up on): such a bundle predicts from feature tables only.
    """
    import warnings

    from mlfactory.data.contract import BARS_FILE
    from mlfactory.prepare.bars import load_bars
    from mlfactory.prepare.recipe import Recipe, measure_warmup

    recipe = Recipe.from_metadata(container.metadata)
    bars_file = Path(container.data_dir) / BARS_FILE if container.data_dir is not None else None
    if recipe is None or bars_file is None or not bars_file.is_file():
        warnings.warn(f"{container.data_dir} has no prepare recipe (scaling_metadata.json timeframes) or no {BARS_FILE}; "
                      "the bundle predicts from feature tables only, not from raw bars")
        return {}
    if view.kind == "multires":
        return {"recipe": recipe.to_json()}
    stat = bars_file.stat()
    key = (str(bars_file.resolve()), stat.st_mtime_ns, stat.st_size, json.dumps(recipe.to_json(), sort_keys=True))
    if key not in _WARMUPS:  # a cross-validation writes a bundle per split from the same bars: measure once
        bars = load_bars(bars_file, fill_gaps=0)  # prepare's bars as it kept them (gaps already filled)
        _WARMUPS.clear()
        _WARMUPS[key] = measure_warmup(bars, recipe)
    return {"recipe": recipe.to_json(), "warmup": copy.deepcopy(_WARMUPS[key])}


# the last measured warm-up, by bars file (path, mtime, size) and recipe: the same input, the same figures
_WARMUPS: dict[tuple, dict[str, Any]] = {}
