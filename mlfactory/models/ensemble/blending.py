"""Blending ensemble."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlfactory.models.ensemble.base import DEFAULT_MEMBERS, MetaLearnerEnsemble, copy_members
from mlfactory.models.ensemble.members import MemberSpec
from mlfactory.registry import register


@register(name="blending", family="ensemble", input_kind="any")
class BlendingEnsemble(MetaLearnerEnsemble):
    """A logistic meta-learner fitted on the members' validation-split predictions.

    Members are trained on train (early-stopping on val); the meta-learner learns from their
    log-probabilities on val, with val's sample weights. The test split is never seen before the
    final evaluation. The val metrics of a blend are in-sample for its meta-learner: judge it on test.

    Args:
        members: registry names, or mappings ``{name: <model>, <param>: <value>}``; unset: xgboost,
            lightgbm and catboost with at most 200 rounds each.
        meta_C: inverse L2 strength of the multinomial logistic meta-learner.
        neural_max_epochs: epoch limit for neural members.
        neural_patience: early-stopping patience for neural members.
    """

    param_ranges = {"meta_C": (1e-8, None), "neural_max_epochs": (1, None), "neural_patience": (1, None)}

    def __init__(
        self,
        *,
        members: list[MemberSpec] = DEFAULT_MEMBERS,  # noqa: B006 - LightningCLI shows the default; copied below
        meta_C: float = 1.0,
        neural_max_epochs: int = 10,
        neural_patience: int = 3,
    ) -> None:
        members = copy_members(members)
        super().__init__(members, neural_max_epochs, neural_patience)
        self.save_hyperparameters()

    def fit_members(self, datamodule: Any, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
        members = self.new_members()
        for member in members:
            self.fit_member(member, datamodule, train_rows, val_rows)
        val = datamodule.container.split("val")
        probs = self.member_rows_proba(members, val, val_rows, datamodule.seq_len, datamodule.eval_batch_size)
        self.fit_combiner(probs, val.labels[val_rows], val.weights[val_rows])
        self.members_ = members
