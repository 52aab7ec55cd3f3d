"""ResNet for time series (Wang, Yan and Oates, 2017) sequence classifier."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlfactory.models.neural.base import NeuralModule
from mlfactory.models.neural.inceptiontime import same_length_conv
from mlfactory.registry import register

KERNEL_SIZES: tuple[int, int, int] = (8, 5, 3)
"""The convolution lengths inside every residual block, as published."""


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    # no bias: BatchNorm right after it would cancel it
    return nn.Sequential(same_length_conv(in_channels, out_channels, kernel_size), nn.BatchNorm1d(out_channels))


class _ResidualBlock(nn.Module):
    """Three convolutions (8, 5, 3) with BatchNorm, ReLU between them; a shortcut added before the last ReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        k1, k2, k3 = KERNEL_SIZES
        self.body = nn.Sequential(
            _conv_bn(in_channels, channels, k1), nn.ReLU(),
            _conv_bn(channels, channels, k2), nn.ReLU(),
            _conv_bn(channels, channels, k3),
        )
        # a 1x1 convolution matches the widths when the block changes the channel count, else BatchNorm alone
        self.shortcut = _conv_bn(in_channels, channels, 1) if in_channels != channels else nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _ResNetClassifier(nn.Module):
    def __init__(self, n_features: int, n_filters: int):
        super().__init__()
        widths = (n_filters, 2 * n_filters, 2 * n_filters)
        self.blocks = nn.Sequential(
            *(_ResidualBlock(n_features if i == 0 else widths[i - 1], width) for i, width in enumerate(widths))
        )
        self.head = nn.Linear(widths[-1], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x.transpose(1, 2))  # (batch, 2 * n_filters, seq_len)
        return self.head(h.mean(dim=-1))  # global average pooling over time


@register(name="resnet1d", family="neural", input_kind="sequence")
class ResNet1DModel(NeuralModule):
    """ResNet for time series: three residual blocks of 8/5/3 convolutions, global average pooling.

    Wang, Yan and Oates, 2017, "Time Series Classification from Scratch with Deep Neural Networks: A
    Strong Baseline" (IJCNN). Each block holds three convolutions of lengths 8, 5 and 3, each followed
    by BatchNorm, with ReLU after the first two; the block's input is added through a shortcut (a 1x1
    convolution and BatchNorm where the width changes, BatchNorm alone where it does not), then ReLU.
    The blocks have ``n_filters``, ``2 * n_filters`` and ``2 * n_filters`` channels. Global average
    pooling over time feeds a linear layer -> 3 logits. Convolutions keep the window's length ("same"
    padding; the even kernel 8 gets the extra step on the right, as in the Keras reference code of
    Ismail Fawaz et al., 2019). There is no dropout, as in the paper.

    The layout is the paper's at half its width by default: 32/64/64 channels, where the paper has
    64/128/128 (``n_filters=64``, what models saved before this default rebuild). At the paper's width
    an epoch of the default data took over 4 x lstm's; half width takes about a third of the
    multiply-adds at no loss on UCR ArrowHead (docs/models.md).

    Args:
        n_filters: channels of the first block; the second and third have twice as many (64: the paper's).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = ResNet1DModel(n_filters=4, n_features=3)
    >>> model(torch.zeros(2, 16, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {**NeuralModule.param_ranges, "n_filters": (1, None)}
    changed_defaults = ("n_filters",)  # was the paper's 64

    def __init__(
        self,
        *,
        n_filters: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        return _ResNetClassifier(n_features, self.hparams.n_filters)
