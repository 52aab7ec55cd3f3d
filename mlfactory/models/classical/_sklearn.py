"""What the scikit-learn models share: weighted fitting, (n, 3) probabilities and skops files.

A fitted estimator is saved with ``skops.io``, which stores the object tree as data and, when
loading, builds only the types it is told to trust: numpy and the common scikit-learn types by
default, plus each model's ``trusted_types``. So a checkpoint never runs a pickle.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

from mlfactory.errors import ModelError
from mlfactory.models.estimator import Arrays, EstimatorModule, RoundHistory


def sklearn_module(name: str) -> Any:
    """``sklearn.<name>``, imported on first use."""
    try:
        return importlib.import_module(f"sklearn.{name}")
    except ImportError as err:
        raise ModelError("scikit-learn is not installed: pip install scikit-learn") from err


def _skops_io() -> Any:
    try:
        import skops.io
    except ImportError as err:
        raise ModelError("skops is not installed: pip install skops") from err
    return skops.io


class SklearnModule(EstimatorModule):
    """Base of the scikit-learn models. A subclass gives :meth:`build_estimator` and ``trusted_types``.

    The estimator is a classifier or a ``Pipeline`` ending in one; the training split's sample
    weights go to that classifier. There are no per-round curves.
    """

    library = "sklearn"
    native_suffix = "skops"
    # types in the fitted estimator that skops does not trust by default (skops.io.get_untrusted_types)
    trusted_types: ClassVar[tuple[str, ...]] = ()

    def fit_estimator(self, estimator: Any, train: Arrays, val: Arrays) -> RoundHistory:
        X, y, w = train
        # a Pipeline takes fit parameters as "<step>__<name>"
        key = f"{estimator.steps[-1][0]}__sample_weight" if hasattr(estimator, "steps") else "sample_weight"
        estimator.fit(X, y, **{key: w})
        return {}

    def estimator_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self.estimator_.predict_proba(X)
        classes = np.asarray(self.estimator_.classes_, dtype=np.intp)
        if classes.tolist() == [0, 1, 2]:
            return proba
        # a model that saw fewer classes: its columns go to the classes it saw, the others get 0
        full = np.zeros((len(proba), 3), dtype=proba.dtype)
        full[:, classes] = proba
        return full

    def to_native(self) -> bytes:
        return _skops_io().dumps(self.estimator_)

    def from_native(self, data: bytes) -> Any:
        skops_io = _skops_io()
        unexpected = sorted(set(skops_io.get_untrusted_types(data=data)) - set(self.trusted_types))
        self._require(
            not unexpected,
            f"will not load a skops file holding types it does not trust: {unexpected}. If they are safe "
            "(e.g. a newer scikit-learn renamed a type), load it with skops.io.loads(data, trusted=[...])",
        )
        return skops_io.loads(data, trusted=list(self.trusted_types))
