"""PatchTST (Nie et al., 2023) sequence classifier."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlfactory.models.neural.base import WindowedNeuralModule
from mlfactory.models.neural.transformer import require_heads_divide
from mlfactory.registry import register


def patch_count(n_steps: int, patch_len: int, stride: int) -> int:
    """Patches of a window after ``stride`` steps of end padding: ``(n_steps - patch_len) // stride + 2``.

    >>> patch_count(30, 16, 8), patch_count(512, 16, 8), patch_count(10, 16, 8)
    (3, 64, 1)
    """
    return (n_steps + stride - patch_len) // stride + 1


class _BatchNormTokens(nn.Module):
    """BatchNorm over the model width of (batch, tokens, d_model), as the paper uses instead of LayerNorm."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _PatchEncoderLayer(nn.Module):
    """Post-norm encoder layer with BatchNorm: self-attention, then a GELU feed-forward block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.norm1, self.norm2 = _BatchNormTokens(d_model), _BatchNormTokens(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm1(tokens + self.dropout(attended))
        return self.norm2(tokens + self.dropout(self.feed_forward(tokens)))


class _PatchTSTClassifier(nn.Module):
    def __init__(
        self, n_features: int, n_steps: int, patch_len: int, stride: int, d_model: int, n_heads: int,
        num_layers: int, d_ff: int, dropout: float, head_dropout: float, instance_norm: bool, channels: int | None,
    ):
        super().__init__()
        self.patch_len, self.stride, self.instance_norm = patch_len, stride, instance_norm
        n_patches = patch_count(n_steps, patch_len, stride)
        # channels: a learned mix of the features into a few series (per time step); None = the features themselves
        self.mix = nn.Identity() if channels is None else nn.Linear(n_features, channels)
        n_features = n_features if channels is None else channels
        self.embed = nn.Linear(patch_len, d_model)  # shared by every channel
        self.position = nn.Parameter(torch.empty(n_patches, d_model).uniform_(-0.02, 0.02))  # learnable
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(*(_PatchEncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(num_layers)))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(head_dropout), nn.Linear(n_features * n_patches * d_model, 3)
        )

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> (batch, channels, n_patches, patch_len), end-padded by repetition."""
        series = self.mix(x).transpose(1, 2)  # (batch, n_features, seq_len): each channel on its own from here on
        if self.instance_norm:
            mean = series.mean(dim=-1, keepdim=True)
            std = (series.var(dim=-1, keepdim=True, unbiased=False) + 1e-5).sqrt()
            series = (series - mean) / std
        series = F.pad(series, (0, self.stride), mode="replicate")  # the paper's padding_patch="end"
        return series.unfold(-1, self.patch_len, self.stride)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-independent backbone: (batch, seq_len, n_features) -> (batch, channels, n_patches, d_model).

        Every channel's series runs through the same backbone as a separate sample, so channel j's
        representation depends on channel j's series only (with ``channels`` set, channel j is the
        j-th learned mix of the features) (BatchNorm shares its batch statistics in
        training, as in the paper).
        """
        patches = self.patches(x)
        batch, channels, n_patches, _ = patches.shape
        tokens = self.dropout(self.embed(patches) + self.position)  # (batch, channels, n_patches, d_model)
        tokens = self.layers(tokens.reshape(batch * channels, n_patches, -1))
        return tokens.reshape(batch, channels, n_patches, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))  # flatten every channel's patch tokens into one linear layer


@register(name="patchtst", family="neural", input_kind="sequence")
class PatchTSTModel(WindowedNeuralModule):
    """PatchTST: a channel-independent transformer over patches of each feature's series.

    Nie et al., 2023, "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers"
    (ICLR). Each feature's series is cut into patches of ``patch_len`` steps every ``stride`` steps,
    after padding the end with ``stride`` copies of the last value (the paper's
    ``padding_patch="end"``), so a window of ``n`` steps gives ``(n - patch_len) // stride + 2``
    patches. Every patch is projected by one shared ``Linear(patch_len -> d_model)``, given a learnable
    position embedding, and the patch tokens of each channel go through the same encoder separately
    (channel independence: channels share weights, never attention). Encoder layers are the paper's:
    post-norm multi-head self-attention and a GELU feed-forward block, with BatchNorm instead of
    LayerNorm. The head flattens every channel's patch tokens, ``channels * n_patches * d_model``
    values, into a linear layer -> 3 logits (the paper's flatten head maps each channel to a forecast
    instead; this is PatchTST's classification head in the Time-Series-Library benchmark). The head
    needs the patch count, so ``n_steps`` is read from the data's ``seq_len`` (see
    :class:`WindowedNeuralModule`). The authors' code also carries attention scores from layer to
    layer ("residual attention"); this uses plain attention, as the paper describes.

    Channels: the paper runs every feature's series through the encoder separately, which on the
    factory's 190 features means 256 x 190 = 48,640 series per batch and a head of ``190 x n_patches x
    d_model`` inputs: about half an hour per epoch of the default data on 2 CPU cores. By default a
    learned ``Linear(n_features -> channels)`` first mixes the features, at every time step, into
    ``channels`` = 16 series, and everything after it (patching, the shared encoder, channel
    independence, the flatten head) is the paper's over those series. This is a departure from the
    paper, which keeps the features apart; ``channels=None`` (``--model.channels null``) is the
    paper's faithful per-feature model, and what checkpoints from before this argument rebuild.

    Defaults are the paper's encoder for its small datasets (ETTh1, ETTh2, ILI: 3 layers, 4 heads,
    d_model 16, d_ff 128, dropout 0.3; its PatchTST/64 sizes, d_model 128 and 16 heads, are for the
    large ones and long horizons), patch_len 16 and stride 8. The paper's windows are 336 or 512
    steps (42 or 64 patches); the factory's 30-row windows give 3 patches, so shorter patches
    (``patch_len 8``, ``stride 4``: 7 patches) give attention more to work with, at about twice the
    cost. ``instance_norm`` is the paper's RevIN (on by default
    there, for non-stationary forecasting); it is off here, because the factory's features are
    already scaled and the level of a window carries the signal.

    Args:
        patch_len: steps per patch; at most the window length plus ``stride``.
        stride: steps between patch starts, and the end padding.
        d_model: width of a patch token; divisible by ``n_heads``.
        n_heads: attention heads per layer.
        num_layers: encoder layers.
        d_ff: hidden width of the feed-forward block.
        dropout: dropout on the embedded patches and in every encoder layer.
        head_dropout: dropout before the head's linear layer.
        instance_norm: normalise each series of each window to zero mean and unit variance first.
        channels: series the features are mixed into before patching; ``None`` = each feature its own
            series (the paper's model; cost grows with the number of features).
        **kwargs: the arguments every neural model shares (``n_features``, ``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = PatchTSTModel(patch_len=4, stride=2, d_model=8, n_heads=2, d_ff=16, n_features=3, n_steps=10)
    >>> model(torch.zeros(2, 10, 3)).shape
    torch.Size([2, 3])
    """

    param_ranges = {
        **WindowedNeuralModule.param_ranges,
        "patch_len": (1, None),
        "stride": (1, None),
        "d_model": (1, None),
        "n_heads": (1, None),
        "num_layers": (1, None),
        "d_ff": (1, None),
        "head_dropout": (0.0, 0.95),
        "channels": (1, None),
    }
    former_values = {"channels": None}  # checkpoints from before ``channels`` are per-feature

    def __init__(
        self,
        *,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 16,
        n_heads: int = 4,
        num_layers: int = 3,
        d_ff: int = 128,
        dropout: float = 0.3,
        head_dropout: float = 0.0,
        instance_norm: bool = False,
        channels: int | None = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        require_heads_divide(self, "d_model", "n_heads")
        self._require(
            hp.patch_len <= hp.n_steps + hp.stride,
            f"patch_len={hp.patch_len} is longer than the end-padded window (n_steps={hp.n_steps} + "
            f"stride={hp.stride}); pass --model.patch_len {hp.n_steps} or less",
        )
        return _PatchTSTClassifier(
            n_features, hp.n_steps, hp.patch_len, hp.stride, hp.d_model, hp.n_heads, hp.num_layers, hp.d_ff,
            hp.dropout, hp.head_dropout, hp.instance_norm, hp.get("channels"),
        )
