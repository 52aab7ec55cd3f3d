"""Voting ensemble."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mlfactory.errors import EnsembleCompatibilityError
from mlfactory.models.ensemble.base import DEFAULT_MEMBERS, EnsembleModule, copy_members
from mlfactory.models.ensemble.members import MemberSpec
from mlfactory.registry import register


@register(name="voting", family="ensemble", input_kind="any")
class VotingEnsemble(EnsembleModule):
    """Weighted soft (mean probability) or hard (majority class) vote of members trained on train.

    ``mlfactory fit --model voting --model.members '[xgboost, lstm]'``. Each member is trained on the
    training split with its own early stopping on val, then their probabilities are averaged with
    ``weights``. Hard voting gives each member's predicted class its weight; the vote shares are the
    ensemble's probabilities.

    Args:
        members: registry names, or mappings ``{name: <model>, <param>: <value>}``; unset: xgboost,
            lightgbm and catboost with at most 200 rounds each.
        weights: one non-negative weight per member; unset = equal weights.
        voting: ``soft`` averages probabilities, ``hard`` counts predicted classes.
        neural_max_epochs: epoch limit for neural members.
        neural_patience: early-stopping patience (epochs without a better val_loss) for neural members.
    """

    param_ranges = {"neural_max_epochs": (1, None), "neural_patience": (1, None)}

    def __init__(
        self,
        *,
        members: list[MemberSpec] = DEFAULT_MEMBERS,  # noqa: B006 - LightningCLI shows the default; copied below
        weights: list[float] | None = None,
        voting: Literal["soft", "hard"] = "soft",
        neural_max_epochs: int = 10,
        neural_patience: int = 3,
    ) -> None:
        members = copy_members(members)
        super().__init__(members, neural_max_epochs, neural_patience)
        self.save_hyperparameters()
        if weights is not None and (len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0):
            raise EnsembleCompatibilityError(
                f"weights {weights} must be {len(members)} non-negative numbers (one per member), not all zero"
            )

    def fit_members(self, datamodule: Any, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
        members = self.new_members()
        for member in members:
            self.fit_member(member, datamodule, train_rows, val_rows)
        self.members_ = members

    def combine(self, member_probs: list[np.ndarray]) -> np.ndarray:
        weights = np.asarray(self.hparams.weights or [1.0] * len(member_probs), dtype=np.float64)
        weights = weights / weights.sum()
        if self.hparams.voting == "hard":
            member_probs = [np.eye(3)[p.argmax(axis=1)] for p in member_probs]
        return np.tensordot(weights, np.stack(member_probs), axes=1).astype(np.float32)
