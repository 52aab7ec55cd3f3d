"""LightGBM gradient-boosted trees."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mlfactory.errors import ModelError
from mlfactory.models.boosting import SAMPLING_PARAM_RANGES
from mlfactory.models.boosting.base import BoosterModule
from mlfactory.models.estimator import Arrays, RoundHistory
from mlfactory.registry import register


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as err:
        raise ModelError("lightgbm is not installed: pip install lightgbm") from err
    return lightgbm


@register(name="lightgbm", family="boosting", input_kind="tabular")
class LightGBMModel(BoosterModule):
    """Gradient-boosted trees (LightGBM, leaf-wise growth), early-stopped on the validation split.

    Trains ``LGBMClassifier`` (multiclass) on the whole training split with its sample weights,
    watching the weighted train and validation log loss (``multi_logloss``) each round; rounds go to
    TensorBoard as steps (``rounds/train_log_loss``, ``rounds/val_log_loss``). Predictions use the best round.
    The booster is kept as LightGBM's model text, cut at the best round; a checkpoint reloads it as a
    ``lightgbm.Booster``.

    Args:
        num_leaves: maximum leaves per tree (LightGBM grows trees leaf by leaf).
        max_depth: maximum tree depth; ``None`` leaves depth unlimited (``num_leaves`` still bounds trees).
        subsample: fraction of rows sampled (again every round) for each tree, in (0, 1].
        colsample_bytree: fraction of features sampled per tree, in (0, 1].
        min_child_samples: minimum rows in a leaf.
        **kwargs: the arguments every booster shares (``n_estimators``, ``learning_rate``,
            ``reg_lambda``, ``early_stopping_rounds``, ``n_jobs``, ``random_state``); see
            :class:`~mlfactory.models.boosting.base.BoosterModule`.
    """

    library = "lightgbm"
    native_suffix = "txt"
    round_metric = "multi_logloss"
    param_ranges = {
        **BoosterModule.param_ranges,
        **SAMPLING_PARAM_RANGES,
        "num_leaves": (2, 131072),
        "max_depth": (1, None),
        "min_child_samples": (1, None),
    }

    def __init__(
        self,
        *,
        num_leaves: int = 31,
        max_depth: int | None = None,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_samples: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_estimator(self) -> Any:
        params = self.hyperparameters()
        del params["early_stopping_rounds"]  # a fit callback, not a classifier parameter
        params["n_jobs"] = self.thread_count(params["n_jobs"])
        params["max_depth"] = -1 if params["max_depth"] is None else params["max_depth"]
        # subsample_freq=1: LightGBM samples rows only when a frequency is set
        return _lightgbm().LGBMClassifier(**params, objective="multiclass", subsample_freq=1, verbose=-1)

    def fit_estimator(self, estimator: Any, train: Arrays, val: Arrays) -> RoundHistory:
        (X, y, w), (X_val, y_val, w_val) = train, val
        # the model text does not say which labels its columns are, so every class must be there
        seen = np.unique(y).tolist()
        self._require(
            seen == [0, 1, 2],
            f"needs all three classes 0, 1, 2 in the training split to write its model text, but it has {seen}",
        )
        rounds = self.hparams.early_stopping_rounds
        lightgbm = _lightgbm()
        callbacks = [] if rounds is None else [lightgbm.early_stopping(rounds, verbose=False)]
        if self._progress is not None:
            callbacks.append(self._round_callback())
        with warnings.catch_warnings():
            # LightGBM 4.7 prefers eval_X/eval_y, which 4.3 to 4.6 lack; eval_set also lets it see that
            # the first set is the training set itself, so it reuses its bins and early stopping skips it
            warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
            estimator.fit(
                X,
                y,
                sample_weight=w,
                eval_set=[(X, y), (X_val, y_val)],
                eval_names=["train", "val"],
                eval_sample_weight=[w, w_val],
                callbacks=callbacks,
            )
        return estimator.evals_result_

    def _round_callback(self) -> Any:
        """A LightGBM callback reporting each round's validation log loss, run before early stopping."""

        def report(env: Any) -> None:
            losses = [r[2] for r in env.evaluation_result_list if r[0] == "val" and r[1] == self.round_metric]
            self.round_done(env.iteration - env.begin_iteration, float(losses[0]) if losses else None)

        report.order = 25  # after the evaluation is recorded (20), before early stopping may end the fit (30)
        return report

    def rounds_kept(self) -> int:
        # early stopping cuts the booster at the best iteration (1-based in LightGBM)
        return int(_booster(self.estimator_).current_iteration())

    def estimator_proba(self, X: np.ndarray) -> np.ndarray:
        # with no iteration given, a booster predicts with its best iteration, as LGBMClassifier does
        return _booster(self.estimator_).predict(X)

    def native_importance(self) -> np.ndarray:
        """Total gain of each feature over the trees."""
        booster = getattr(self.estimator_, "booster_", self.estimator_)
        return np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)

    def to_native(self) -> bytes:
        # the best iteration when early stopping found one, else every round
        return _booster(self.estimator_).model_to_string().encode("utf-8")

    def from_native(self, data: bytes) -> Any:
        return _lightgbm().Booster(model_str=data.decode("utf-8"))


def _booster(estimator: Any) -> Any:
    """The ``lightgbm.Booster`` of a fitted ``LGBMClassifier``; a booster reloaded from text as it is."""
    return estimator if isinstance(estimator, _lightgbm().Booster) else estimator.booster_
