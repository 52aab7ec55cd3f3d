"""GRU sequence classifier."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mlfactory.models.neural.base import NeuralModule
from mlfactory.registry import register


class _GRUClassifier(nn.Module):
    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool):
        super().__init__()
        self.gru = nn.GRU(
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
        out, _ = self.gru(x)  # (batch, seq_len, width)
        return self.head(out[:, -1])  # the last step summarises the window


@register(name="gru", family="neural", input_kind="sequence")
class GRUModel(NeuralModule):
    """GRU over a window of feature rows; the last hidden state feeds a linear head.

    A lighter recurrent cell than the LSTM (two gates instead of three, no separate cell state): fewer
    parameters per unit and usually faster, with similar accuracy on short windows.

    Args:
        hidden_size: GRU units per layer.
        num_layers: stacked GRU layers.
        dropout: dropout between GRU layers and before the head.
        bidirectional: also read the window backwards (the window is all past data, so this does not leak).
        n_features, learning_rate, weight_decay, optimizer, lr_scheduler: see :class:`NeuralModule`.

    >>> model = GRUModel(hidden_size=8, num_layers=1, n_features=3)
    >>> model(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {**NeuralModule.param_ranges, "hidden_size": (1, None), "num_layers": (1, None)}

    def __init__(
        self,
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        bidirectional: bool = False,
        n_features: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr_scheduler: Literal["plateau", "cosine", "none"] = "plateau",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.ensure_network()

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        return _GRUClassifier(n_features, hp.hidden_size, hp.num_layers, hp.dropout, hp.bidirectional)
