"""N-BEATS (Oreshkin et al., 2020), generic architecture, adapted to classification."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlfactory.models.neural.base import WindowedNeuralModule
from mlfactory.registry import register


class _Block(nn.Module):
    """Fully connected ReLU layers, then two linear heads: a backcast of the input and a forecast (3 logits)."""

    def __init__(self, input_size: int, layer_width: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(input_size if i == 0 else layer_width, layer_width), nn.ReLU()]
        self.fc = nn.Sequential(*layers)
        self.backcast = nn.Linear(layer_width, input_size)
        self.forecast = nn.Linear(layer_width, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x)
        return self.backcast(h), self.forecast(h)


class _NBeatsClassifier(nn.Module):
    def __init__(
        self, n_features: int, n_steps: int, num_stacks: int, num_blocks: int, num_layers: int, layer_width: int,
        share_weights: bool, channels: int | None,
    ):
        super().__init__()
        # channels: a learned mix of the features into a few series (per time step); None = the features themselves
        self.mix = nn.Identity() if channels is None else nn.Linear(n_features, channels)
        input_size = n_steps * (n_features if channels is None else channels)

        def stack() -> list[nn.Module]:
            if share_weights:  # one block applied num_blocks times
                return [_Block(input_size, layer_width, num_layers)] * num_blocks
            return [_Block(input_size, layer_width, num_layers) for _ in range(num_blocks)]

        # a ModuleList may hold the same block several times; its parameters are registered once
        self.blocks = nn.ModuleList(block for _ in range(num_stacks) for block in stack())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Doubly residual: each block reads what the blocks before it left unexplained; forecasts add up."""
        residual = self.mix(x).flatten(1)  # (batch, seq_len * channels): the whole window, row after row
        logits = residual.new_zeros(residual.shape[0], 3)  # shape, not len(): ONNX keeps the batch dynamic
        for block in self.blocks:
            backcast, forecast = block(residual)
            residual = residual - backcast
            logits = logits + forecast
        return logits


@register(name="n_beats", family="neural", input_kind="sequence")
class NBeatsModel(WindowedNeuralModule):
    """N-BEATS: doubly residual stacks of fully connected blocks over the flattened window.

    Oreshkin et al., 2020, "N-BEATS: Neural basis expansion analysis for interpretable time series
    forecasting" (ICLR), generic architecture (N-BEATS-G). Each block is ``num_layers`` fully
    connected ReLU layers of ``layer_width`` units followed by two linear heads: a backcast, which
    rebuilds the block's input, and a forecast. Blocks are chained doubly residually: block ``k``
    reads the input minus the backcasts of blocks ``1 .. k-1``, and the model's output is the sum of
    all blocks' forecasts. Blocks are grouped into ``num_stacks`` stacks of ``num_blocks``; in the
    generic architecture the grouping matters only with ``share_weights`` (one block's weights reused
    within a stack).

    Adaptation to classification: N-BEATS forecasts a horizon of one univariate series from its own
    lookback. Here the input is the whole window flattened, all ``seq_len * n_features`` values (the
    factory's features have no privileged target series, so every feature is treated alike, as
    exogenous series are flattened into the input in N-BEATSx), the backcast rebuilds that flattened
    window, and each block's forecast head outputs 3 class logits instead of a horizon of values;
    they are summed over blocks like the forecasts, and the softmax of the sum is the prediction.
    The input size depends on the window, so ``n_steps`` is read from the data's ``seq_len`` (see
    :class:`WindowedNeuralModule`). The paper's ensembles of 180 models are not reproduced.

    Channels: the flattened window of the factory's 190 features is 5,700 values, so every block's
    first layer and backcast are ``5,700 x layer_width`` (about 19 million weights in all with the
    defaults below). By default a learned ``Linear(n_features -> channels)`` first mixes the
    features, at every time step, into ``channels`` = 16 series, and the blocks read and backcast
    that mixed window (``seq_len * 16`` values). This is a departure from the paper;
    ``channels=None`` (``--model.channels null``) flattens the features themselves, and is what
    checkpoints from before this argument rebuild.

    Defaults are CPU-friendly: the paper's N-BEATS-G has 30 stacks of 1 block, 4 layers of 512
    units; the defaults are 2 stacks of 3 blocks, 4 layers of 256 units (about 2.7 million weights on
    a 30-row window of 16 mixed series).

    Args:
        num_stacks: stacks of blocks.
        num_blocks: blocks per stack.
        num_layers: fully connected layers per block (paper: 4).
        layer_width: units per fully connected layer (paper: 512).
        share_weights: reuse one block's weights for every block of a stack (paper: off in the generic model).
        channels: series the features are mixed into before flattening; ``None`` = the features themselves
            (cost grows with the number of features).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = NBeatsModel(num_stacks=1, num_blocks=2, layer_width=8, n_features=3, n_steps=5)
    >>> model(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **WindowedNeuralModule.param_ranges,
        "num_stacks": (1, None),
        "num_blocks": (1, None),
        "num_layers": (1, None),
        "layer_width": (1, None),
        "channels": (1, None),
    }
    former_values = {"channels": None}  # checkpoints from before ``channels`` flatten the features

    def __init__(
        self,
        *,
        num_stacks: int = 2,
        num_blocks: int = 3,
        num_layers: int = 4,
        layer_width: int = 256,
        share_weights: bool = False,
        channels: int | None = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        return _NBeatsClassifier(
            n_features, hp.n_steps, hp.num_stacks, hp.num_blocks, hp.num_layers, hp.layer_width, hp.share_weights,
            hp.get("channels"),
        )
