"""Temporal convolutional network (Bai, Kolter and Koltun, 2018) sequence classifier."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from mlfactory.models.neural.base import NeuralModule
from mlfactory.registry import register


def receptive_field(kernel_size: int, num_levels: int) -> int:
    """Time steps one output sees: ``1 + 2 * (kernel_size - 1) * (2**num_levels - 1)``.

    Each level holds two convolutions of dilation ``2**level``, each widening the view by
    ``(kernel_size - 1) * dilation`` steps.

    >>> receptive_field(3, 4), receptive_field(3, 5)
    (61, 125)
    """
    return 1 + 2 * (kernel_size - 1) * (2**num_levels - 1)


def levels_for(kernel_size: int, field: int) -> int:
    """The fewest levels (at least one) whose :func:`receptive_field` is at least ``field``.

    >>> levels_for(3, 61), levels_for(3, 62)
    (4, 5)
    """
    if kernel_size < 2:
        raise ValueError(f"kernel_size={kernel_size} never widens the receptive field; use 2 or more")
    levels = 1
    while receptive_field(kernel_size, levels) < field:
        levels += 1
    return levels


class _CausalConv(nn.Module):
    """Conv1d padded on the left only, so the output at step t reads inputs at steps <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, weight_norm: bool):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv = _weight_norm(conv) if weight_norm else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left_pad, 0)))  # (batch, channels, seq_len) -> same length


class _ResidualBlock(nn.Module):
    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, dilation: int, dropout: float, weight_norm: bool
    ):
        super().__init__()
        self.body = nn.Sequential(
            _CausalConv(in_channels, channels, kernel_size, dilation, weight_norm),
            nn.ReLU(),
            nn.Dropout(dropout),
            _CausalConv(channels, channels, kernel_size, dilation, weight_norm),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        # a 1x1 convolution matches the widths when the block changes the channel count
        self.skip = nn.Conv1d(in_channels, channels, 1) if in_channels != channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class TCNClassifier(nn.Module):
    def __init__(
        self, n_features: int, channels: int, kernel_size: int, num_levels: int, dropout: float, weight_norm: bool
    ):
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                _ResidualBlock(n_features if level == 0 else channels, channels, kernel_size, 2**level, dropout,
                               weight_norm)
                for level in range(num_levels)
            )
        )
        self.head = nn.Linear(channels, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stack: (batch, seq_len, n_features) -> (batch, channels, seq_len), causal in time."""
        return self.blocks(x.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[:, :, -1])  # the last step has seen the whole receptive field


@register(name="tcn", family="neural", input_kind="sequence")
class TCNModel(NeuralModule):
    """Temporal convolutional network: stacked residual blocks of dilated causal convolutions.

    Each level is a residual block of two causal ``Conv1d`` (padded on the left only, so the output at
    step t sees inputs at steps <= t), each followed by ReLU and dropout; level ``i`` dilates by
    ``2**i``. The last step's channels feed a linear head. The receptive field of ``num_levels``
    levels is ``1 + 2 * (kernel_size - 1) * (2**num_levels - 1)`` steps (61 for kernel 3 and 4
    levels), and it should cover the data's ``seq_len``: otherwise the oldest rows of each window are
    never seen. Training refuses a ``seq_len`` larger than the field. Convolutions run over the whole
    window in parallel, so a TCN trains faster than a recurrent net on long windows.

    Args:
        channels: convolution channels in every level.
        kernel_size: taps per convolution; 2 or more.
        receptive_field: steps the last output must see; picks the fewest levels that reach it. Set
            it to at least the data's ``seq_len``.
        num_levels: residual blocks; unset = the fewest that reach ``receptive_field``. When set, it
            wins over ``receptive_field``.
        dropout: dropout after every convolution.
        weight_norm: weight-normalise the convolutions, as in the paper.
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = TCNModel(channels=8, kernel_size=3, receptive_field=30, n_features=3)
    >>> model.levels(), model.field()
    (4, 61)
    >>> model(torch.zeros(2, 30, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **NeuralModule.param_ranges,
        "channels": (1, None),
        "kernel_size": (2, None),
        "receptive_field": (1, None),
        "num_levels": (1, None),
    }

    def __init__(
        self,
        *,
        channels: int = 64,
        kernel_size: int = 3,
        receptive_field: int = 64,
        num_levels: int | None = None,
        dropout: float = 0.1,
        weight_norm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def levels(self) -> int:
        """Residual blocks in the network: ``num_levels``, or the fewest reaching ``receptive_field``."""
        hp = self.hparams
        self._require(
            hp.kernel_size >= 2, f"kernel_size={hp.kernel_size} never widens the receptive field; pass 2 or more"
        )
        return hp.num_levels if hp.num_levels is not None else levels_for(hp.kernel_size, hp.receptive_field)

    def field(self) -> int:
        """Time steps the last output sees: :func:`receptive_field` of ``kernel_size`` and :meth:`levels`."""
        return receptive_field(self.hparams.kernel_size, self.levels())

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        return TCNClassifier(n_features, hp.channels, hp.kernel_size, self.levels(), hp.dropout, hp.weight_norm)

    def setup(self, stage: str) -> None:
        """Also refuse a data window longer than the receptive field."""
        super().setup(stage)
        seq_len = self.data_seq_len()
        if seq_len is None:
            return
        field, hp = self.field(), self.hparams
        fix = (
            f"--model.receptive_field {seq_len}" if hp.num_levels is None
            else f"--model.num_levels {levels_for(hp.kernel_size, seq_len)}"
        )
        self._require(
            seq_len <= field,
            f"receptive field {field} (kernel_size={hp.kernel_size}, {self.levels()} levels) is shorter than the "
            f"data's seq_len={seq_len}, so the oldest rows of each window would be ignored; pass {fix}, "
            "or a smaller --data.seq_len",
        )
