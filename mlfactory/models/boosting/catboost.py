"""CatBoost gradient-boosted oblivious trees."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


from mlfactory.errors import ModelError
from mlfactory.models.boosting.base import BoosterModule
from mlfactory.models.estimator import Arrays, RoundHistory
from mlfactory.registry import register


def _catboost() -> Any:
    try:
        import catboost
    except ImportError as err:
        raise ModelError("catboost is not installed: pip install catboost") from err
    return catboost


@register(name="catboost", family="boosting", input_kind="tabular")
class CatBoostModel(BoosterModule):
    """Gradient-boosted oblivious trees (CatBoost), early-stopped on the validation split.

    Trains ``CatBoostClassifier(loss_function="MultiClass")`` on the whole training split with its
    sample weights (a weighted ``Pool``), watching the weighted train and validation log loss
    (``MultiClass``) each round; rounds go to TensorBoard as steps (``rounds/train_log_loss``,
    ``rounds/val_log_loss``).
    The model is cut to the best round (``use_best_model``), kept in CatBoost's binary ``cbm`` format,
    and writes no ``catboost_info/`` folder. It always has the three classes' columns: a class the
    training split lacks gets probability 0. Parameter names follow the other boosting models; the
    CatBoost name is given in brackets. With ``early_stopping_rounds=None`` all ``n_estimators``
    rounds are trained and the best round is still the one kept.

    Args:
        max_depth: depth of each symmetric tree, at most 16 (``depth``).
        reg_lambda: L2 penalty on leaf values (``l2_leaf_reg``); CatBoost's default, 3, not the
            other boosters' 1.
        **kwargs: the arguments every booster shares: ``n_estimators`` (``iterations``),
            ``learning_rate``, ``early_stopping_rounds``, ``n_jobs`` (``thread_count``) and
            ``random_state`` (``random_seed``); see :class:`~mlfactory.models.boosting.base.BoosterModule`.
    """

    library = "catboost"
    native_suffix = "cbm"
    round_metric = "MultiClass"
    param_ranges = {**BoosterModule.param_ranges, "max_depth": (1, 16)}

    def __init__(
        self,
        *,
        max_depth: int = 6,
        reg_lambda: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(reg_lambda=reg_lambda, **kwargs)

    def build_estimator(self) -> Any:
        hp = self.hparams
        return _catboost().CatBoostClassifier(
            iterations=hp.n_estimators,
            depth=hp.max_depth,
            learning_rate=hp.learning_rate,
            l2_leaf_reg=hp.reg_lambda,
            early_stopping_rounds=hp.early_stopping_rounds,
            thread_count=self.thread_count(-1 if hp.n_jobs is None else hp.n_jobs),
            random_seed=hp.random_state,
            loss_function="MultiClass",
            class_names=[0, 1, 2],  # three columns even if the training split lacks a class (it gets 0)
            use_best_model=True,
            allow_writing_files=False,
            verbose=False,
        )

    def fit_estimator(self, estimator: Any, train: Arrays, val: Arrays) -> RoundHistory:
        (X, y, w), (X_val, y_val, w_val) = train, val
        catboost = _catboost()
        callbacks = None if self._progress is None else [_RoundCallback(self)]
        estimator.fit(catboost.Pool(X, y, weight=w), eval_set=catboost.Pool(X_val, y_val, weight=w_val),
                      callbacks=callbacks)
        curves = estimator.evals_result_
        return {"train": curves["learn"], "val": curves["validation"]}

    def rounds_kept(self) -> int:
        # use_best_model cuts the trees at the best iteration
        return int(self.estimator_.tree_count_)

    def native_importance(self) -> np.ndarray:
        """CatBoost's prediction-values-change importance of each feature (sums to 100)."""
        return np.asarray(self.estimator_.get_feature_importance(), dtype=float)

    def to_native(self) -> bytes:
        # CatBoost writes its binary format only to a file
        with tempfile.TemporaryDirectory(prefix="mlfactory-catboost-") as directory:
            path = Path(directory) / "model.cbm"
            self.estimator_.save_model(str(path), format="cbm")
            return path.read_bytes()

    def from_native(self, data: bytes) -> Any:
        return _catboost().CatBoostClassifier().load_model(blob=data)


class _RoundCallback:
    """CatBoost's callback protocol: ``after_iteration(info)`` each round (1-based); True continues."""

    def __init__(self, module: CatBoostModel) -> None:
        self.module = module

    def after_iteration(self, info: Any) -> bool:
        curve = info.metrics.get("validation", {}).get(self.module.round_metric)
        self.module.round_done(info.iteration - 1, float(curve[-1]) if curve else None)
        return True
