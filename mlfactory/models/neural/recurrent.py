"""The shared body of the recurrent classifiers (lstm, gru): they differ only in the cell."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mlfactory.models.neural.base import NeuralModule


class RecurrentClassifier(nn.Module):
    """A stacked recurrent ``cell`` over the window; its last step feeds LayerNorm -> Dropout -> Linear."""

    def __init__(
        self, cell: type[nn.RNNBase], n_features: int, hidden_size: int, num_layers: int, dropout: float,
        bidirectional: bool,
    ) -> None:
        super().__init__()
        self.rnn = cell(
            n_features,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        width = hidden_size * (2 if bidirectional else 1)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (batch, seq_len, width)
        return self.head(out[:, -1])  # the last step summarises the window


class RecurrentModel(NeuralModule):
    """A recurrent network over a window of feature rows; the last hidden state feeds a linear head.

    Args:
        hidden_size: units per recurrent layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between recurrent layers and before the head.
        bidirectional: also read the window backwards (the window is all past data, so this does not leak).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.
    """

    cell: ClassVar[type[nn.RNNBase]]
    param_ranges = {**NeuralModule.param_ranges, "hidden_size": (1, None), "num_layers": (1, None)}

    def __init__(
        self,
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        bidirectional: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        return RecurrentClassifier(self.cell, n_features, hp.hidden_size, hp.num_layers, hp.dropout, hp.bidirectional)
