"""Stacking ensemble."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlfactory.data.container import SplitData
from mlfactory.models.ensemble.base import DEFAULT_MEMBERS, MetaLearnerEnsemble, copy_members
from mlfactory.models.ensemble.members import MemberSpec
from mlfactory.registry import register


def purged_folds(
    split: SplitData, rows: np.ndarray, n_folds: int, purge: int, embargo: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Chronological K-fold over ``rows`` with purge and embargo: ``[(fit_rows, held_out_rows), ...]``.

    Folds are consecutive blocks of time. For each held-out block and each symbol, the fit rows lose
    the ``purge`` rows just before the block (their labels, ``purge`` bars long, would reach into it)
    and the ``embargo`` rows just after it (serial correlation would carry it forward).
    """
    times = split.timestamps[rows].astype(np.int64)
    edges = np.quantile(times, np.linspace(0.0, 1.0, n_folds + 1))
    fold_of = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, n_folds - 1)
    segment = split.segment_start[rows]
    folds = []
    for k in range(n_folds):
        held_out = fold_of == k
        keep = ~held_out
        for start in np.unique(segment[held_out]):
            same_symbol = segment == start
            block = rows[held_out & same_symbol]
            first, last = block.min(), block.max()
            keep &= ~(same_symbol & (rows >= first - purge) & (rows < first))
            keep &= ~(same_symbol & (rows > last) & (rows <= last + embargo))
        folds.append((rows[keep], rows[held_out]))
    return folds


@register(name="stacking", family="ensemble", input_kind="any")
class StackingEnsemble(MetaLearnerEnsemble):
    """A logistic meta-learner trained on out-of-fold member predictions over the training split.

    The training split is cut into ``n_folds`` chronological blocks (purged K-fold, López de Prado
    2018): for each block, fresh members are fitted on the other blocks, less the rows whose labels
    reach into the block (purge = the label horizon) and an ``embargo`` after it, and predict the
    block. The meta-learner learns from those out-of-fold log-probabilities, never from in-sample
    ones. Finally the members are refitted on the whole training split. Each member is fitted
    ``n_folds + 1`` times.

    Args:
        members: registry names, or mappings ``{name: <model>, <param>: <value>}``; unset: xgboost,
            lightgbm and catboost with at most 200 rounds each.
        n_folds: chronological folds of the training split, at least 2.
        embargo: bars dropped from the fit rows after each held-out block, per symbol.
        meta_C: inverse L2 strength of the multinomial logistic meta-learner.
        neural_max_epochs: epoch limit for neural members.
        neural_patience: early-stopping patience for neural members.
    """

    param_ranges = {
        "n_folds": (2, None),
        "embargo": (0, None),
        "meta_C": (1e-8, None),
        "neural_max_epochs": (1, None),
        "neural_patience": (1, None),
    }

    def __init__(
        self,
        *,
        members: list[MemberSpec] = DEFAULT_MEMBERS,  # noqa: B006 - LightningCLI shows the default; copied below
        n_folds: int = 3,
        embargo: int = 10,
        meta_C: float = 1.0,
        neural_max_epochs: int = 10,
        neural_patience: int = 3,
    ) -> None:
        members = copy_members(members)
        super().__init__(members, neural_max_epochs, neural_patience)
        self.save_hyperparameters()

    def fit_members(self, datamodule: Any, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
        train = datamodule.container.split("train")
        seq_len, batch_size = datamodule.seq_len, datamodule.eval_batch_size
        out_of_fold = [np.zeros((len(train), 3), dtype=np.float32) for _ in self.hparams.members]
        folds = purged_folds(train, train_rows, self.hparams.n_folds, datamodule.horizon, self.hparams.embargo)
        for fit_rows, held_out in folds:
            members = self.new_members()
            for member, oof in zip(members, out_of_fold):
                self.fit_member(member, datamodule, fit_rows, val_rows)
                oof[held_out] = self.member_rows_proba([member], train, held_out, seq_len, batch_size)[0]
        self.fit_combiner([oof[train_rows] for oof in out_of_fold], train.labels[train_rows], train.weights[train_rows])
        members = self.new_members()
        for member in members:
            self.fit_member(member, datamodule, train_rows, val_rows)
        self.members_ = members
