"""Inference bundles: a trained model, self-contained, that predicts on unscaled features or raw bars (docs/inference.md).

>>> from mlfactory.inference import ModelBundle
>>> ModelBundle.load("lightning_logs/xgboost/<run_id>/bundle").predict(frame)  # needs a trained run  # doctest: +SKIP
>>> ModelBundle.load("lightning_logs/xgboost/<run_id>/bundle").predict_bars("new_bars.csv")  # doctest: +SKIP

Light to import: the model's library, torch and Lightning load only when a bundle is loaded.
"""

from __future__ import annotations

from mlfactory.inference.bundle import FORMAT_VERSION, BundleError, ModelBundle, write_bundle

__all__ = ["FORMAT_VERSION", "BundleError", "ModelBundle", "write_bundle"]
