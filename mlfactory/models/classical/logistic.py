"""Multinomial logistic regression."""

from __future__ import annotations

from typing import Any

from mlfactory.models.classical._sklearn import SklearnModule, sklearn_module
from mlfactory.registry import register


@register(name="logistic", family="classical", input_kind="tabular")
class LogisticModel(SklearnModule):
    """Multinomial logistic regression (scikit-learn) on standardised features; a linear baseline.

    Standardises each feature with the training split's mean and standard deviation, then fits
    ``LogisticRegression`` (L2 penalty, L-BFGS; with three classes its loss is the multinomial
    log loss, one softmax over the classes) with the training split's sample weights. The pipeline
    is kept as a ``skops`` file, never a pickle.

    Args:
        C: inverse strength of the L2 penalty; smaller is stronger.
        max_iter: maximum L-BFGS iterations.
    """

    param_ranges = {"C": (1e-6, None), "max_iter": (1, None)}

    def __init__(self, *, C: float = 1.0, max_iter: int = 1000) -> None:
        super().__init__()
        self.save_hyperparameters()

    def build_estimator(self) -> Any:
        return sklearn_module("pipeline").Pipeline(
            [
                ("scale", sklearn_module("preprocessing").StandardScaler()),
                ("logistic", sklearn_module("linear_model").LogisticRegression(**self.hyperparameters())),
            ]
        )
