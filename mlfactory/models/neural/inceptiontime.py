"""InceptionTime (Ismail Fawaz et al., 2020) sequence classifier."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlfactory.models.neural.base import NeuralModule
from mlfactory.registry import register


def kernel_sizes(kernel_size: int) -> list[int]:
    """The three convolution lengths of a module: ``kernel_size`` halved twice (the paper's 40, 20, 10).

    >>> kernel_sizes(40), kernel_sizes(9)
    ([40, 20, 10], [9, 4, 2])
    """
    return [max(kernel_size // 2**i, 1) for i in range(3)]


def same_length_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """A bias-free Conv1d that keeps the length, padded like Keras' ``padding="same"``.

    ``(k - 1) // 2`` zeros go on the left and ``k // 2`` on the right, so an even kernel pads one more
    step on the right.

    >>> same_length_conv(2, 4, 8)(torch.zeros(1, 2, 30)).shape
    torch.Size([1, 4, 30])
    """
    padding = ((kernel_size - 1) // 2, kernel_size // 2)
    return nn.Sequential(nn.ConstantPad1d(padding, 0.0), nn.Conv1d(in_channels, out_channels, kernel_size, bias=False))


class _InceptionModule(nn.Module):
    """Bottleneck, three parallel convolutions and a max-pool branch, concatenated; BatchNorm and ReLU."""

    def __init__(self, in_channels: int, n_filters: int, bottleneck_size: int, kernel_size: int, use_bottleneck: bool):
        super().__init__()
        bottleneck = use_bottleneck and in_channels > 1  # as in the paper: a univariate input has nothing to squeeze
        self.bottleneck = nn.Conv1d(in_channels, bottleneck_size, 1, bias=False) if bottleneck else nn.Identity()
        width = bottleneck_size if bottleneck else in_channels
        self.kernels = kernel_sizes(kernel_size)
        self.convs = nn.ModuleList(same_length_conv(width, n_filters, k) for k in self.kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(in_channels, n_filters, 1, bias=False))
        self.out = nn.Sequential(nn.BatchNorm1d(4 * n_filters), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.bottleneck(x)
        # one zero padding for the longest kernel; each convolution reads the slice its own "same" padding gives
        left, right = (self.kernels[0] - 1) // 2, self.kernels[0] // 2
        padded = F.pad(squeezed, (left, right))
        length = x.shape[-1]
        branches = []
        for k, conv in zip(self.kernels, self.convs):
            start = left - (k - 1) // 2
            branches.append(conv[1](padded[..., start:start + length + k - 1]))
        branches.append(self.pool(x))
        return self.out(torch.cat(branches, dim=1))  # (batch, 4 * n_filters, seq_len)


class _Shortcut(nn.Module):
    """The residual of a group of modules: 1x1 convolution and BatchNorm of the group's input, added, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.project = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels))

    def forward(self, group_input: torch.Tensor, group_output: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(group_input) + group_output)


class _InceptionTimeClassifier(nn.Module):
    def __init__(
        self, n_features: int, n_filters: int, bottleneck_size: int, kernel_size: int, depth: int,
        use_residual: bool, use_bottleneck: bool,
    ):
        super().__init__()
        width = 4 * n_filters
        self.inception = nn.ModuleList(
            _InceptionModule(n_features if d == 0 else width, n_filters, bottleneck_size, kernel_size, use_bottleneck)
            for d in range(depth)
        )
        # a shortcut closes every group of three modules
        groups = depth // 3 if use_residual else 0
        self.shortcuts = nn.ModuleList(_Shortcut(n_features if g == 0 else width, width) for g in range(groups))
        self.head = nn.Linear(width, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> (batch, 4 * n_filters, seq_len)."""
        h = group_input = x.transpose(1, 2)
        for d, module in enumerate(self.inception):
            h = module(h)
            if d % 3 == 2 and d // 3 < len(self.shortcuts):
                h = group_input = self.shortcuts[d // 3](group_input, h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=-1))  # global average pooling over time


@register(name="inceptiontime", family="neural", input_kind="sequence")
class InceptionTimeModel(NeuralModule):
    """InceptionTime: stacked inception modules of multi-length convolutions with residual shortcuts.

    Ismail Fawaz et al., 2020, "InceptionTime: Finding AlexNet for Time Series Classification" (Data
    Mining and Knowledge Discovery). Each inception module squeezes its input to ``bottleneck_size``
    channels with a 1x1 convolution, runs three convolutions of lengths ``kernel_size``,
    ``kernel_size // 2`` and ``kernel_size // 4`` over it in parallel, adds a branch of max-pooling
    (size 3) and a 1x1 convolution of the unsqueezed input, concatenates the four branches
    (``4 * n_filters`` channels), then BatchNorm and ReLU. Every group of three modules is closed by a
    residual shortcut (1x1 convolution and BatchNorm of the group's input, added, ReLU). Global
    average pooling over time feeds a linear layer -> 3 logits. Convolutions are padded to keep the
    window's length ("same"; an even kernel gets the extra step on the right, as in the authors' Keras
    code); kernels longer than the window see zero padding beyond it.

    Defaults are smaller than the paper's network, whose sizes were chosen for the UCR series (80
    to 2,800 steps): 6 modules in 2 residual groups as published, but 16 filters per branch (paper:
    32), bottleneck 16 (paper: 32) and kernels 20/10/5 (paper: 40/20/10), trained by Adam at 1e-3.
    On the factory's 30-row windows a kernel of 40 reads mostly the zero padding beyond the window;
    6 modules of kernel 20 still see 115 steps. On the default data (190 features) the paper's
    network trains an epoch about 8 x slower than lstm, these defaults about 3 x; on the UCR check
    (``benchmarks/tsc_reference.py``, ArrowHead) see docs/models.md. The paper's network is
    ``n_filters=32, bottleneck_size=32, kernel_size=40`` (``--model.n_filters 32
    --model.bottleneck_size 32 --model.kernel_size 40``), and what saved models from before this
    change rebuild. The paper's InceptionTime is an ensemble of 5 such networks with different
    initialisations; this model is one network (average several runs' probabilities to reproduce
    the ensemble).

    Args:
        n_filters: filters of each of the four branches; a module outputs ``4 * n_filters`` channels.
        bottleneck_size: channels after the 1x1 bottleneck.
        kernel_size: length of the longest convolution; the others are its half and quarter.
        depth: inception modules; a residual shortcut closes every group of three.
        use_residual: add the residual shortcuts.
        use_bottleneck: squeeze the input of each module (skipped for a single input channel).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = InceptionTimeModel(n_filters=4, bottleneck_size=4, kernel_size=8, n_features=3)
    >>> model(torch.zeros(2, 16, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **NeuralModule.param_ranges,
        "n_filters": (1, None),
        "bottleneck_size": (1, None),
        "kernel_size": (1, None),
        "depth": (1, None),
    }
    changed_defaults = ("n_filters", "bottleneck_size", "kernel_size")  # were the paper's 32, 32 and 40

    def __init__(
        self,
        *,
        n_filters: int = 16,
        bottleneck_size: int = 16,
        kernel_size: int = 20,
        depth: int = 6,
        use_residual: bool = True,
        use_bottleneck: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        return _InceptionTimeClassifier(
            n_features, hp.n_filters, hp.bottleneck_size, hp.kernel_size, hp.depth, hp.use_residual, hp.use_bottleneck
        )
