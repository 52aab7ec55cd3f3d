"""Multi-resolution encoder: one sequence branch per timeframe over raw bars, then a fusion head."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mlfactory.data.multires import CHANNELS
from mlfactory.models.neural.base import NeuralModule
from mlfactory.models.neural.recurrent import RecurrentClassifier
from mlfactory.models.neural.tcn import TCNClassifier, levels_for
from mlfactory.models.neural.transformer import TransformerClassifier, require_heads_divide
from mlfactory.registry import register

Encoder = Literal["lstm", "gru", "tcn", "transformer"]


def encoder_branch(encoder: str, lookback: int, width: int, num_layers: int, nhead: int, dropout: float) -> nn.Module:
    """The body of the registered ``encoder`` model on the 5 bar channels: (batch, lookback, 5) -> (batch, width).

    It is that model's own network with its classification head removed, so a branch reads one
    timeframe exactly as the single-resolution model reads its window: the recurrent models and the
    transformer summarise it in the last step, the TCN's receptive field covers the whole lookback.
    """
    channels = len(CHANNELS)
    if encoder in ("lstm", "gru"):
        net = RecurrentClassifier(nn.LSTM if encoder == "lstm" else nn.GRU, channels, width, num_layers, dropout, False)
    elif encoder == "tcn":
        net = TCNClassifier(channels, width, 3, levels_for(3, lookback), dropout, True)
    else:
        net = TransformerClassifier(channels, width, nhead, num_layers, 2 * width, dropout, "last")
    net.head = nn.Identity()
    return net


class MultiResolutionNetwork(nn.Module):
    """Branches keyed by timeframe; their summaries are concatenated and mapped to 3 logits."""

    def __init__(self, branches: dict[str, nn.Module], width: int, dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        fused = width * len(branches)
        self.head = nn.Sequential(
            nn.LayerNorm(fused), nn.Dropout(dropout), nn.Linear(fused, width), nn.GELU(), nn.Linear(width, 3)
        )

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([branch(x[name]) for name, branch in self.branches.items()], dim=1))


@register(name="multires", family="neural", input_kind="multires")
class MultiResolutionModel(NeuralModule):
    """Sequence encoders over raw bars at several timeframes at once (the factory's "Strategy 3").

    Each timeframe of the data's multi-resolution view (``--data.timeframes``, ``--data.lookback`` /
    ``--data.span``; docs/data.md) gets its own branch, built from the ``encoder`` model's network
    (lstm, gru, tcn or transformer) with its head removed; the branches' summaries are concatenated and
    fused by LayerNorm -> Dropout -> Linear -> GELU -> Linear. Inputs are the 5 bar channels (open,
    high, low, close, volume), normalised within each window, so no indicator is involved.

    Args:
        encoder: the branch network: ``lstm``, ``gru``, ``tcn`` or ``transformer``.
        hidden_size: width of every branch (LSTM/GRU units, TCN channels, transformer d_model) and of the
            fusion layer.
        num_layers: recurrent or transformer layers per branch (the TCN sizes its depth to the lookback).
        nhead: attention heads of the transformer branches; divides ``hidden_size``.
        dropout: dropout inside the branches and before the fusion layer.
        lookbacks: timeframe -> bins per window, one branch each; unset = taken from the data when a fit
            starts and saved, so a checkpoint rebuilds the same branches. (Not called ``timeframes``:
            Lightning refuses a model and a data module hyper-parameter of one name with different values.)
        **kwargs: the training arguments every neural model shares (``learning_rate``,
            ``weight_decay``, ``optimizer``, ``lr_scheduler``); see :class:`NeuralModule`.

    >>> model = MultiResolutionModel(hidden_size=8, lookbacks={"5min": 12, "1h": 4})
    >>> model({"5min": torch.zeros(2, 12, 5), "1h": torch.zeros(2, 4, 5)}).shape
    torch.Size([2, 3])
    """

    param_ranges = {**NeuralModule.param_ranges, "hidden_size": (1, None), "num_layers": (1, None), "nhead": (1, None)}

    def __init__(
        self,
        *,
        encoder: Encoder = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        nhead: int = 4,
        dropout: float = 0.1,
        lookbacks: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        # the input is always the bar channels, so this model takes no n_features: it is fixed here (and
        # so left out of the CLI signature) and dropped again from the saved hyper-parameters
        super().__init__(n_features=None, **kwargs)
        self.save_hyperparameters(ignore=["n_features"])

    def ensure_network(self) -> None:
        """Build one branch per timeframe once the timeframes and their lookbacks are known."""
        if self.net is None and self.hparams.get("lookbacks"):
            self.net = self.build_network(len(CHANNELS))

    def build_network(self, n_features: int) -> nn.Module:
        hp = self.hparams
        if hp.encoder == "transformer":
            require_heads_divide(self, "hidden_size", "nhead")
        branches = {
            name: encoder_branch(hp.encoder, int(lookback), hp.hidden_size, hp.num_layers, hp.nhead, hp.dropout)
            for name, lookback in hp.lookbacks.items()
        }
        return MultiResolutionNetwork(branches, hp.hidden_size, hp.dropout)

    def setup(self, stage: str) -> None:
        """Take the timeframes and lookbacks from the data module; refuse data that does not match the network."""
        self.check_params()
        datamodule = getattr(self.trainer, "datamodule", None)
        lookbacks = getattr(datamodule, "multires_lookbacks", None)
        if lookbacks is None:
            self.ensure_network()
            self._require(self.net is not None, "lookbacks is unset and no FactoryDataModule tells it; pass lookbacks")
            return
        data = lookbacks()
        if not self.hparams.get("lookbacks"):
            self.hparams["lookbacks"] = data
        self.ensure_network()
        self._require(
            dict(self.hparams["lookbacks"]) == data,
            f"was built for lookbacks {dict(self.hparams['lookbacks'])} (bins per window) but the data serves "
            f"{data}; pass the same --data.timeframes and --data.lookback",
        )

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        self.ensure_network()
        self._require(self.net is not None, "lookbacks is unset; pass lookbacks or train it on a FactoryDataModule")
        self._require(isinstance(x, dict), "reads a dict of windows per timeframe (input kind multires), got a tensor")
        return self.net(x)

    def predict_proba_array(self, x: dict[str, np.ndarray]) -> np.ndarray:  # type: ignore[override]
        """(n, 3) float32 probabilities of windows ``{timeframe: (n, lookback, 5)}`` (an inference bundle's input)."""
        with torch.inference_mode():
            windows = {name: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(self.device)
                       for name, v in x.items()}
            n = len(next(iter(windows.values())))
            batch = {"x": windows, "y": torch.zeros(n, dtype=torch.long, device=self.device),
                     "w": torch.ones(n, dtype=torch.float32, device=self.device)}
            return self.predict_proba(batch).float().cpu().numpy()

    def hyperparameters(self) -> dict[str, Any]:
        params = super().hyperparameters()
        if params.get("lookbacks") is not None:
            params["lookbacks"] = dict(params["lookbacks"])
        return params
