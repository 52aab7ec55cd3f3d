"""Classical scikit-learn models on the estimator wrapper, saved with skops instead of pickle."""
