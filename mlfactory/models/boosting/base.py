"""The base of the gradient-boosted tree models: the arguments every booster here takes, owned once."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mlfactory.models.boosting import BOOSTING_PARAM_RANGES
from mlfactory.models.estimator import EstimatorModule, FitProgress

ROUND_METRIC = "log_loss"
"""The one name of the per-round quantity every booster watches: the sample-weighted multiclass log loss."""


class BoosterModule(EstimatorModule):
    """A boosting library's classifier, early-stopped on the validation split.

    This base owns the arguments every booster takes under the same name (below). A booster's typed
    signature lists only its own arguments and ends in ``**kwargs``, which it passes to
    ``super().__init__``: LightningCLI follows that call into this signature (``--model.help`` lists
    both), and the ``save_hyperparameters()`` here saves the arguments of the whole ``__init__`` chain.
    A booster whose library wants another default passes that argument on explicitly.

    Every booster watches the weighted log loss of the training and validation splits each round,
    under its library's name (``round_metric``: ``mlogloss``, ``multi_logloss``, ``MultiClass``; the
    same quantity). TensorBoard gets them as ``rounds/train_log_loss`` and ``rounds/val_log_loss``
    for every library, one step per round. While it fits, the library's own per-round callback drives
    a bar in rounds (when the trainer shows progress bars), which ends with the rounds trained and the
    best iteration; :meth:`summarize_fit` records both in ``fit_summary_`` (the run record's
    ``training_metrics.json``).

    Args:
        n_estimators: maximum boosting rounds.
        learning_rate: shrinkage per round, in (0, 1].
        reg_lambda: L2 penalty on leaf values.
        early_stopping_rounds: stop after this many rounds without a better validation log loss;
            ``None`` trains all ``n_estimators`` rounds.
        n_jobs: threads; ``None`` uses the data module's ``threads`` when set, else every core.
        random_state: seed of the library's random choices (row and column sampling).
    """

    param_ranges = BOOSTING_PARAM_RANGES
    round_metric: ClassVar[str] = ""
    """The library's name of the multiclass log loss in its per-round curves."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.round_metric:
            cls.round_metric_names = {cls.round_metric: ROUND_METRIC}

    def __init__(
        self,
        *,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 50,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    def new_progress(self) -> FitProgress:
        """A bar over ``n_estimators`` rounds, fed by the library's callback (:meth:`round_done`)."""
        return FitProgress(f"{self.registry_name} rounds", self.hparams.n_estimators, self.progress_enabled())

    def round_done(self, index: int, val_loss: float | None) -> None:
        """Called by the library's callback after round ``index`` (0-based) while a bar is shown."""
        if self._progress is not None:
            self._progress.round_done(index, val_loss)

    def rounds_kept(self) -> int:
        """How many rounds the fitted model predicts with (the best iteration's, when early stopping kept it)."""
        raise NotImplementedError

    def summarize_fit(self) -> dict[str, Any]:
        """Rounds trained, the best iteration (0-based, lowest validation log loss) and whether it stopped early.

        ``early_stopped`` is true when the library ended before ``n_estimators`` rounds; the best
        iteration is the lowest point of the validation curve, which is the one each library's early
        stopping keeps (the first of equal values).
        """
        curve = self.history_.get("val", {}).get(self.round_metric)
        if not curve:
            return {}
        best = int(np.argmin(curve))
        max_rounds = int(self.hparams.n_estimators)
        return {
            "metric": ROUND_METRIC,
            "library_metric": self.round_metric,
            "max_rounds": max_rounds,
            "rounds_trained": len(curve),
            "best_iteration": best,
            "best_val_log_loss": float(curve[best]),
            "rounds_kept": self.rounds_kept(),
            "early_stopped": len(curve) < max_rounds,
        }
