"""Gradient-boosted tree models on the estimator wrapper."""

# the ranges of the parameters every booster here takes under the same name
BOOSTING_PARAM_RANGES: dict[str, tuple[float | None, float | None]] = {
    "n_estimators": (1, None),
    "learning_rate": (1e-6, 1.0),
    "reg_lambda": (0.0, None),
    "early_stopping_rounds": (1, None),
}
# row and column sampling, where the library has it
SAMPLING_PARAM_RANGES: dict[str, tuple[float | None, float | None]] = {
    "subsample": (1e-6, 1.0),
    "colsample_bytree": (1e-6, 1.0),
}
