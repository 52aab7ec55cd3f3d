"""Random forest of scikit-learn decision trees."""

from __future__ import annotations

from typing import Any, Literal

from mlfactory.models.classical._sklearn import SklearnModule, sklearn_module
from mlfactory.models.estimator import Arrays, RoundHistory
from mlfactory.registry import register


@register(name="random_forest", family="classical", input_kind="tabular")
class RandomForestModel(SklearnModule):
    """Random forest (scikit-learn), bagged deep trees with large leaves; no early stopping.

    Trains ``RandomForestClassifier`` on the whole training split with its sample weights. Each tree
    sees a bootstrap sample of rows and ``max_features`` features at each split; probabilities are the
    mean of the trees' leaf class frequencies. Large leaves (``min_samples_leaf``) keep the trees from
    memorising noise. The forest is kept as a ``skops`` file, never a pickle.

    Args:
        n_estimators: number of trees.
        max_depth: maximum tree depth; ``None`` grows until leaves reach ``min_samples_leaf``.
        min_samples_leaf: minimum rows in a leaf.
        max_features: features tried at each split: ``"sqrt"`` or ``"log2"`` of their number, a
            fraction in (0, 1], or ``None`` for all of them.
        n_jobs: threads used to grow the trees; ``-1`` uses every core (the data module's
            ``threads`` when set), ``None`` one. Prediction
            always uses one thread, so that repeated predictions are identical.
        random_state: seed for the bootstrap samples and feature draws.
    """

    trusted_types = ("sklearn.tree._tree.Tree",)
    param_ranges = {"n_estimators": (1, None), "max_depth": (1, None), "min_samples_leaf": (1, None)}

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        max_depth: int | None = None,
        min_samples_leaf: int = 50,
        max_features: Literal["sqrt", "log2"] | float | None = "sqrt",
        n_jobs: int | None = -1,
        random_state: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    def build_estimator(self) -> Any:
        params = self.hyperparameters()
        params["n_jobs"] = self.thread_count(params["n_jobs"])
        return sklearn_module("ensemble").RandomForestClassifier(**params)

    def fit_estimator(self, estimator: Any, train: Arrays, val: Arrays) -> RoundHistory:
        history = super().fit_estimator(estimator, train, val)
        # threads add the trees' votes in whatever order they finish, so parallel predictions can
        # differ in the last bit from one call to the next; one thread keeps them reproducible
        estimator.set_params(n_jobs=1)
        return history
