"""LSTM sequence classifier."""

from __future__ import annotations

from torch import nn

from mlfactory.models.neural.recurrent import RecurrentModel
from mlfactory.registry import register


@register(name="lstm", family="neural", input_kind="sequence")
class LSTMModel(RecurrentModel):
    """LSTM over a window of feature rows; the last hidden state feeds a linear head.

    Hochreiter & Schmidhuber (1997). Parameters: see :class:`RecurrentModel` (``hidden_size=64``,
    ``num_layers=2``, ``dropout=0.1``, ``bidirectional=False`` and the shared neural arguments).

    >>> import torch
    >>> LSTMModel(hidden_size=8, num_layers=1, n_features=3)(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    cell = nn.LSTM
