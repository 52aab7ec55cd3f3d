"""Gradient-boosted tree models on the estimator wrapper."""
