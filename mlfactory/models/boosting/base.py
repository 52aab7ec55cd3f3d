"""The base of the gradient-boosted tree models: the arguments every booster here takes, owned once."""

from __future__ import annotations

from mlfactory.models.boosting import BOOSTING_PARAM_RANGES
from mlfactory.models.estimator import EstimatorModule


class BoosterModule(EstimatorModule):
    """A boosting library's classifier, early-stopped on the validation split.

    This base owns the arguments every booster takes under the same name (below). A booster's typed
    signature lists only its own arguments and ends in ``**kwargs``, which it passes to
    ``super().__init__``: LightningCLI follows that call into this signature (``--model.help`` lists
    both), and the ``save_hyperparameters()`` here saves the arguments of the whole ``__init__`` chain.
    A booster whose library wants another default passes that argument on explicitly.

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
