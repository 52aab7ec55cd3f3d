"""iTransformer (Liu et al., 2024) sequence classifier, and the base of models sized by the window length."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlfactory.models.neural.base import WindowedNeuralModule
from mlfactory.models.neural.transformer import require_heads_divide
from mlfactory.registry import register


class _SeriesEncoderLayer(nn.Module):
    """Post-norm encoder layer of the paper: self-attention and a position-wise feed-forward block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm1(tokens + self.dropout(attended))
        return self.norm2(tokens + self.dropout(self.feed_forward(tokens)))


class _ITransformerClassifier(nn.Module):
    def __init__(
        self, n_features: int, n_steps: int, d_model: int, n_heads: int, num_layers: int, d_ff: int, dropout: float,
        instance_norm: bool, channels: int | None,
    ):
        super().__init__()
        self.instance_norm = instance_norm
        # channels: a learned mix of the features into a few series (per time step); None = the features themselves
        self.mix = nn.Identity() if channels is None else nn.Linear(n_features, channels)
        n_features = n_features if channels is None else channels
        self.embed = nn.Sequential(nn.Linear(n_steps, d_model), nn.Dropout(dropout))  # a whole series -> a token
        self.layers = nn.ModuleList(_SeriesEncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Flatten(), nn.Linear(n_features * d_model, 3))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's variable tokens: (batch, seq_len, n_features) -> (batch, n_features, d_model).

        No position code is added, so permuting the variables permutes the tokens the same way.
        """
        series = self.mix(x).transpose(1, 2)  # (batch, channels, seq_len): one row per variable
        if self.instance_norm:
            mean = series.mean(dim=-1, keepdim=True)
            std = (series.var(dim=-1, keepdim=True, unbiased=False) + 1e-5).sqrt()
            series = (series - mean) / std
        tokens = self.embed(series)
        for layer in self.layers:
            tokens = layer(tokens)  # variables attend to variables
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(x))  # flatten every variable's token into the head


@register(name="itransformer", family="neural", input_kind="sequence")
class ITransformerModel(WindowedNeuralModule):
    """iTransformer: each variable's whole window is one token, and attention runs across variables.

    Liu et al., 2024, "iTransformer: Inverted Transformers Are Effective for Time Series Forecasting"
    (ICLR). The transformer is "inverted": instead of one token per time step, each of the ``n_features``
    series is embedded by ``Linear(n_steps -> d_model)`` into one token. Post-norm encoder layers
    (self-attention over the variable tokens, then a GELU feed-forward block, each with a residual
    connection and LayerNorm) model how the variables relate; the feed-forward block, shared by all
    tokens, models each series' own temporal features. A final LayerNorm closes the encoder. For
    classification, as in the paper's authors' Time-Series-Library, the tokens go through GELU and
    dropout and are flattened, all ``channels * d_model`` values, into a linear layer -> 3 logits
    (the paper's head projects each token to a forecast instead). Time-stamp covariates, which the
    paper adds as extra tokens, are absent: every feature column is a variable token. The embedding
    needs the window length: ``n_steps`` is read from the data's ``seq_len`` (see
    :class:`WindowedNeuralModule`), so a model serves one window length.

    Channels: one token per feature gives 190 tokens per window on the factory's default data, and
    48,640 tokens per batch through every encoder layer: about 8 minutes per epoch on 2 CPU cores.
    By default a learned ``Linear(n_features -> channels)`` first mixes the features, at every time
    step, into ``channels`` = 16 series, and each of those becomes a token; attention then runs
    across these learned variables. This is a departure from the paper, where each token is one
    measured variable; ``channels=None`` (``--model.channels null``) is the paper's faithful model,
    and what checkpoints from before this argument rebuild.

    Defaults: the paper's scripts use 2-4 layers, 8 heads, dropout 0.1 and d_model = d_ff between
    128 (ETT) and 512 (Electricity, Traffic, Weather); the defaults are the small end (2 layers,
    d_model = d_ff = 128). ``instance_norm`` is the paper's per-series
    normalisation (``use_norm``, on by default there for non-stationary forecasting); it is off
    here, because the factory's features are already scaled and the level of a window carries the
    signal.

    Args:
        d_model: width of a variable token; divisible by ``n_heads``.
        n_heads: attention heads per layer.
        num_layers: encoder layers.
        d_ff: hidden width of the feed-forward block.
        dropout: dropout on the embedding, in attention and feed-forward blocks, and before the head.
        instance_norm: normalise each series of each window to zero mean and unit variance first.
        channels: series (tokens) the features are mixed into first; ``None`` = one token per feature
            (the paper's model; cost grows with the number of features).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = ITransformerModel(d_model=8, n_heads=2, d_ff=16, n_features=3, n_steps=5)
    >>> model(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **WindowedNeuralModule.param_ranges,
        "d_model": (1, None),
        "n_heads": (1, None),
        "num_layers": (1, None),
        "d_ff": (1, None),
        "channels": (1, None),
    }
    former_values = {"channels": None}  # checkpoints from before ``channels`` are per-feature

    def __init__(
        self,
        *,
        d_model: int = 128,
        n_heads: int = 8,
        num_layers: int = 2,
        d_ff: int = 128,
        dropout: float = 0.1,
        instance_norm: bool = False,
        channels: int | None = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        require_heads_divide(self, "d_model", "n_heads")
        return _ITransformerClassifier(
            n_features, hp.n_steps, hp.d_model, hp.n_heads, hp.num_layers, hp.d_ff, hp.dropout, hp.instance_norm,
            hp.get("channels"),
        )
