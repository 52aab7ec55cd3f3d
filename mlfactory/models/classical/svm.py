"""Support vector machine with an approximate RBF kernel."""

from __future__ import annotations

from typing import Any

from mlfactory.models.classical._sklearn import SklearnModule, sklearn_module
from mlfactory.registry import register


@register(name="svm", family="classical", input_kind="tabular")
class SVMModel(SklearnModule):
    """RBF-kernel SVM, approximated so that it scales linearly in rows, with calibrated probabilities.

    An exact kernel SVM costs time quadratic in the rows. This pipeline instead:

    1. standardises the features on the training split;
    2. maps them to ``n_components`` Nystroem features whose dot products approximate the RBF kernel
       ``exp(-gamma * |x - x'|^2)`` (built from as many training rows, drawn at random);
    3. fits a linear SVM there (``SGDClassifier``, hinge loss, averaged SGD, one-vs-rest) with the
       training split's sample weights;
    4. turns its margins into probabilities with ``CalibratedClassifierCV(method="sigmoid")`` over
       ``calibration_folds`` contiguous, unshuffled blocks of the training rows: each block's sigmoids
       are fitted (weighted) on the margins of an SVM that did not train on it, and the final
       probabilities average the blocks' calibrated SVMs.

    Rows stay in the split's order (symbol by symbol, by time within a symbol), so a calibration
    block is a stretch of time rather than rows interleaved with those the SVM trained on. The
    pipeline is kept as a ``skops`` file, never a pickle.

    Args:
        alpha: L2 penalty of the linear SVM (about ``1 / (C * rows)`` in ``SVC`` terms); larger is smoother.
        gamma: RBF kernel width; ``None`` is ``1 / n_features`` (the features are standardised).
        n_components: Nystroem features, i.e. training rows the kernel is built from; more is closer to
            the exact kernel and slower.
        max_iter: maximum passes (epochs) of SGD over the training rows.
        calibration_folds: contiguous blocks for the sigmoid calibration, at least 2.
        n_jobs: threads for the one-vs-rest SVMs; ``-1`` uses every core (the data module's
            ``threads`` when set), ``None`` one.
        random_state: seed for the Nystroem rows and the SGD order.
    """

    trusted_types = (
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.model_selection._split.KFold",
    )
    param_ranges = {
        "alpha": (1e-10, None),
        "gamma": (1e-10, None),
        "n_components": (1, None),
        "max_iter": (1, None),
        "calibration_folds": (2, None),
    }

    def __init__(
        self,
        *,
        alpha: float = 1e-4,
        gamma: float | None = None,
        n_components: int = 400,
        max_iter: int = 100,
        calibration_folds: int = 3,
        n_jobs: int | None = -1,
        random_state: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    def build_estimator(self) -> Any:
        hp = self.hparams
        svm = sklearn_module("linear_model").SGDClassifier(
            loss="hinge", alpha=hp.alpha, average=True, max_iter=hp.max_iter, n_jobs=self.thread_count(hp.n_jobs),
            random_state=hp.random_state,
        )
        calibrated = sklearn_module("calibration").CalibratedClassifierCV(
            svm, method="sigmoid", cv=sklearn_module("model_selection").KFold(hp.calibration_folds), ensemble=True
        )
        kernel = sklearn_module("kernel_approximation").Nystroem(
            kernel="rbf", gamma=hp.gamma, n_components=hp.n_components, random_state=hp.random_state
        )
        return sklearn_module("pipeline").Pipeline(
            [("scale", sklearn_module("preprocessing").StandardScaler()), ("kernel", kernel), ("svm", calibrated)]
        )
