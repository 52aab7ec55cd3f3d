"""GRU sequence classifier."""

from __future__ import annotations

from torch import nn

from mlfactory.models.neural.recurrent import RecurrentModel
from mlfactory.registry import register


@register(name="gru", family="neural", input_kind="sequence")
class GRUModel(RecurrentModel):
    """GRU over a window of feature rows; the last hidden state feeds a linear head.

    Cho et al. (2014). A lighter recurrent cell than the LSTM (two gates instead of three, no separate
    cell state): fewer parameters per unit and usually faster, with similar accuracy on short windows.
    Parameters: see :class:`RecurrentModel`.

    >>> import torch
    >>> GRUModel(hidden_size=8, num_layers=1, n_features=3)(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    cell = nn.GRU
