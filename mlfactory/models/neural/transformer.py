"""Encoder-only transformer (Vaswani et al., 2017) sequence classifier."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from mlfactory.models.neural.base import NeuralModule
from mlfactory.registry import register


def sinusoidal_encoding(seq_len: int, d_model: int) -> torch.Tensor:
    """The fixed (seq_len, d_model) position table: ``sin(t / 10000**(2i/d))`` in even, ``cos`` in odd columns.

    >>> sinusoidal_encoding(4, 6).shape
    torch.Size([4, 6])
    """
    position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)  # (seq_len, 1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(seq_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


def require_heads_divide(model: NeuralModule, width: str, heads: str) -> None:
    """Refuse an attention ``width`` that the ``heads`` (hyper-parameter names) do not divide.

    Every head gets ``width / heads`` dimensions; the error names both ``--model`` options.
    """
    hp = model.hparams
    model._require(
        hp[heads] >= 1 and hp[width] % hp[heads] == 0,
        f"{width}={hp[width]} is not divisible by {heads}={hp[heads]}; every head gets {width} / {heads} "
        f"dimensions, so pick --model.{width} as a multiple of --model.{heads}",
    )


class _SinusoidalPosition(nn.Module):
    """Adds the position table, computed for the window's length, so no length limit and nothing saved."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len, d_model = x.shape[-2:]
        return x + sinusoidal_encoding(seq_len, d_model).to(device=x.device, dtype=x.dtype)


class TransformerClassifier(nn.Module):
    def __init__(
        self,
        n_features: int,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int,
        dropout: float,
        pooling: str,
    ):
        super().__init__()
        self.project = nn.Linear(n_features, d_model)
        self.position = _SinusoidalPosition()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=dim_feedforward, dropout=dropout, batch_first=True, norm_first=True
        )
        # pre-norm layers leave the output unnormalised; the head's LayerNorm is the final norm
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.pooling = pooling
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.position(self.project(x)))  # (batch, seq_len, d_model)
        pooled = h[:, -1] if self.pooling == "last" else h.mean(dim=1)  # (batch, d_model)
        return self.head(pooled)


@register(name="transformer", family="neural", input_kind="sequence")
class TransformerModel(NeuralModule):
    """Encoder-only transformer over a window of feature rows, pooled into a linear head.

    Each row is projected to ``d_model`` and given a fixed sinusoidal position code, so the model knows
    the order of the rows; pre-norm encoder layers then let every row attend to every other. No causal
    mask is needed: the whole window is past data relative to the label, so a row attending to a later
    row of the same window does not leak. Attention is quadratic in ``seq_len``.

    Args:
        d_model: width of the projected rows and of every layer; divisible by ``nhead``.
        nhead: attention heads per layer.
        num_layers: stacked encoder layers.
        dim_feedforward: hidden width of each layer's feed-forward block.
        dropout: dropout in attention, feed-forward blocks and before the head.
        pooling: ``last`` reads the last row's output (which has attended to the whole window);
            ``mean`` averages over the rows.
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = TransformerModel(d_model=8, nhead=2, num_layers=1, dim_feedforward=16, n_features=3)
    >>> model(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **NeuralModule.param_ranges,
        "d_model": (1, None),
        "nhead": (1, None),
        "num_layers": (1, None),
        "dim_feedforward": (1, None),
    }

    def __init__(
        self,
        *,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        pooling: Literal["last", "mean"] = "last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        require_heads_divide(self, "d_model", "nhead")
        return TransformerClassifier(
            n_features, hp.d_model, hp.nhead, hp.num_layers, hp.dim_feedforward, hp.dropout, hp.pooling
        )
