"""XGBoost gradient-boosted trees."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mlfactory.errors import ModelError
from mlfactory.models.boosting import SAMPLING_PARAM_RANGES
from mlfactory.models.boosting.base import BoosterModule
from mlfactory.data.split import SplitRows
from mlfactory.models.estimator import Arrays, RoundHistory, as_split_rows
from mlfactory.registry import register


def _xgboost() -> Any:
    try:
        import xgboost
    except ImportError as err:
        raise ModelError("xgboost is not installed: pip install xgboost-cpu (or xgboost for GPU support)") from err
    return xgboost


@register(name="xgboost", family="boosting", input_kind="tabular")
class XGBoostModel(BoosterModule):
    """Gradient-boosted trees (XGBoost, histogram method), early-stopped on the validation split.

    Trains ``XGBClassifier`` with ``objective="multi:softprob"`` on the whole training split with its
    sample weights, watching train and validation log loss (``mlogloss``) each round; rounds go to
    TensorBoard as steps (``rounds/train_log_loss``, ``rounds/val_log_loss``). Predictions use the best
    round. The booster is kept as UBJSON, XGBoost's own binary format; it holds every trained round.

    Memory: the training split goes into a ``QuantileDMatrix`` (the binned features only; the raw
    features are not copied), straight from the container's array; with a row subset (cross-validation
    folds, tuning trials) from an ``xgboost.DataIter`` over row batches, so the subset's features are
    never gathered whole. The validation matrix takes its bins from the training one (``ref``) and the
    training curve reuses the training matrix (docs/performance.md, "Boosting on large splits").

    Args:
        max_depth: maximum tree depth.
        subsample: fraction of rows sampled per tree, in (0, 1].
        colsample_bytree: fraction of features sampled per tree, in (0, 1].
        min_child_weight: minimum summed hessian (sample weight) in a leaf.
        **kwargs: the arguments every booster shares (``n_estimators``, ``learning_rate``,
            ``reg_lambda``, ``early_stopping_rounds``, ``n_jobs``, ``random_state``); see
            :class:`~mlfactory.models.boosting.base.BoosterModule`.
    """

    library = "xgboost"
    native_suffix = "ubj"
    round_metric = "mlogloss"
    param_ranges = {
        **BoosterModule.param_ranges,
        **SAMPLING_PARAM_RANGES,
        "max_depth": (1, None),
        "min_child_weight": (0.0, None),
    }

    def __init__(
        self,
        *,
        max_depth: int = 6,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_estimator(self) -> Any:
        params = self.hyperparameters()
        params["n_jobs"] = self.thread_count(params["n_jobs"])
        return _classifier_class()(
            **params, objective="multi:softprob", eval_metric="mlogloss", tree_method="hist"
        )

    def split_input(self, datamodule: Any, split: str) -> SplitRows:
        """The split's container array and rows in use: a subset is fed in row batches, never copied whole."""
        return datamodule.split_rows(split)

    def fit_estimator(self, estimator: Any, train: SplitRows | Arrays, val: SplitRows | Arrays) -> RoundHistory:
        # the array itself, or (with a row subset) the rows, which the classifier builds its matrix from in batches
        train, val = as_split_rows(train), as_split_rows(val)
        X, y, w = train.X if train.rows is None else train, train.y_used, train.w_used
        X_val, y_val, w_val = val.X if val.rows is None else val, val.y_used, val.w_used
        if self._progress is not None:  # xgboost takes callbacks as a parameter, not in fit
            estimator.set_params(callbacks=[_round_callback(self)])
        try:
            estimator.fit(
                X,
                y,
                sample_weight=w,
                eval_set=[(X, y), (X_val, y_val)],
                sample_weight_eval_set=[w, w_val],
                verbose=False,
            )
        finally:
            estimator.set_params(callbacks=None)  # the fitted estimator holds no reference to the bar
        curves = estimator.evals_result()
        return {"train": curves["validation_0"], "val": curves["validation_1"]}

    def rounds_kept(self) -> int:
        # early stopping keeps every round and predicts with those up to the best one
        if self.hparams.early_stopping_rounds is not None:
            return int(self.estimator_.best_iteration) + 1
        return int(self.estimator_.get_booster().num_boosted_rounds())

    def native_importance(self) -> np.ndarray:
        """Total gain of each feature over the trees."""
        booster = self.estimator_.get_booster()
        scores = booster.get_score(importance_type="total_gain")
        return np.array([scores.get(f"f{j}", 0.0) for j in range(booster.num_features())])

    def to_native(self) -> bytes:
        return bytes(self.estimator_.get_booster().save_raw(raw_format="ubj"))

    def from_native(self, data: bytes) -> Any:
        estimator = _xgboost().XGBClassifier()
        estimator.load_model(bytearray(data))
        return estimator


@functools.cache
def _classifier_class() -> type:
    """``XGBClassifier`` that also takes :class:`SplitRows` as data: its ``QuantileDMatrix`` is then built
    from row batches (``xgboost.DataIter``), with the same bins as from the gathered array."""
    xgboost = _xgboost()

    class RowBatches(xgboost.DataIter):
        """The rows in use of one split, :data:`~mlfactory.data.split.BATCH_ROWS` at a time."""

        def __init__(self, rows: SplitRows) -> None:
            self.rows, self.y, self.w = rows, rows.y_used, rows.w_used
            self.pieces = list(rows.batches())
            self.index = 0
            super().__init__(release_data=True)

        def next(self, input_data: Any) -> bool:
            if self.index >= len(self.pieces):
                return False
            start, stop = self.pieces[self.index]
            input_data(data=self.rows.features(start, stop), label=self.y[start:stop], weight=self.w[start:stop])
            self.index += 1
            return True

        def reset(self) -> None:
            self.index = 0

    class XGBRowsClassifier(xgboost.XGBClassifier):
        def _create_dmatrix(self, ref: Any, **kwargs: Any) -> Any:
            data = kwargs.get("data")
            if not isinstance(data, SplitRows):
                return super()._create_dmatrix(ref, **kwargs)
            # labels and weights travel in the batches, with the features of the same rows
            return xgboost.QuantileDMatrix(RowBatches(data), ref=ref, missing=kwargs.get("missing"),
                                           nthread=self.n_jobs, max_bin=self.max_bin)

    return XGBRowsClassifier


def _round_callback(module: XGBoostModel) -> Any:
    """An ``xgboost.callback.TrainingCallback`` that reports each round's validation log loss to ``module``."""

    class RoundCallback(_xgboost().callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            curve = evals_log.get("validation_1", {}).get(module.round_metric)
            module.round_done(epoch, float(curve[-1]) if curve else None)
            return False  # never stops training itself

    return RoundCallback()
