"""ONNX export of a neural bundle, checked against PyTorch through onnxruntime.

The exported graph takes the bundle's input as the bundle takes it: **unscaled** features (the
scaler from scaling_metadata.json is part of the graph; a bundle that expects scaled features exports
none), shaped (batch, seq_len, n_features) for sequence models and (batch, n_features) for tabular ones,
float32, batch size free. It returns (batch, 3) class probabilities. Windowing stays the caller's job
(see docs/inference.md). Needs the optional extra: ``pip install 'mlfactory[onnx]'``.

>>> from mlfactory.inference import ModelBundle
>>> from mlfactory.inference.onnx import export_onnx
>>> export_onnx(ModelBundle.load("lightning_logs/lstm/<run_id>/bundle"), "lstm.onnx")  # needs a trained run  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from mlfactory.atomic import remove_stale_partials, replacing
from mlfactory.errors import ModelError
from mlfactory.inference.bundle import BundleError, ModelBundle
from mlfactory.prepare.scaling import Scaler

INPUT_NAME, OUTPUT_NAME = "features", "probabilities"
INSTALL_HINT = "pip install 'mlfactory[onnx]' (onnx, onnxscript and onnxruntime)"


def export_onnx(bundle: ModelBundle | str | Path, path: str | Path, *, check: bool = True, atol: float = 1e-5) -> Path:
    """Write the bundle's network as ONNX to ``path``; with ``check``, compare onnxruntime with PyTorch.

    The check runs both on 256 random windows around the scaler's centre (or standard normal, without
    a scaler) and raises :class:`BundleError` when any probability differs by more than ``atol``.

    Raises:
        BundleError: the bundle is not a neural model (estimators keep their own formats in
            ``bundle/model/``), or the check fails.
        ModelError: onnx, onnxscript or onnxruntime is not installed.
    """
    _require("onnx", "onnxscript", "onnxruntime")
    bundle = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    if bundle.spec["model"]["kind"] != "neural":
        raise BundleError(
            f"ONNX export is for neural models; {bundle.model_name} is a {bundle.spec['model']['family']} model, whose "
            f"native format is in {bundle.path / 'model'}"
        )
    if bundle.input_kind == "multires":
        raise BundleError(f"ONNX export takes one window tensor; {bundle.model_name} reads a window per timeframe "
                          f"(multires), which the export does not cover: serve it with its bundle ({bundle.path})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    graph = OnnxGraph(bundle).eval()
    with replacing(path) as tmp:
        with _quiet():
            torch.onnx.export(
                graph,
                (torch.zeros(_shape(bundle, 2), dtype=torch.float32),),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                external_data=False,  # one self-contained file (models under the 2 GB protobuf limit)
                verbose=False,
            )
        _add_metadata(tmp, bundle)
        if check:
            x = random_input(bundle, 256)
            with torch.inference_mode():
                expected = graph(torch.from_numpy(x)).numpy()
            try:
                found = run_onnx(tmp, x)
            except Exception as err:  # onnxruntime's own error types
                raise BundleError(
                    f"the ONNX graph of {bundle.model_name} does not run on a batch of {len(x)} ({err}). A network "
                    "that reads its batch size as a Python int (len(x), int(x.shape[0])) is exported for that batch "
                    "size only; use x.shape[0] in its forward. Not written."
                ) from None
            diff = float(np.abs(found - expected).max())
            if not diff <= atol:
                raise BundleError(
                    f"ONNX export of {bundle.model_name} differs from PyTorch by {diff:.2e} (> atol {atol}); not written"
                )
    return path


class OnnxGraph(nn.Module):
    """Unscaled float32 input -> (x - center) / scale -> the bundle's network -> softmax probabilities."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__()
        self.net = copy.deepcopy(bundle.module.net).cpu()  # the bundle's own network stays where it is
        self.scaler = _scaler(bundle).torch_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scaler(x)).float().softmax(dim=-1)


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Probabilities from the ONNX file through onnxruntime (CPU)."""
    ort = _require("onnxruntime")[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def random_input(bundle: ModelBundle, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unscaled inputs whose scaled values are standard normal."""
    z = np.random.default_rng(seed).standard_normal(_shape(bundle, n))
    if bundle.expects_scaled:
        return z.astype(np.float32)
    return _scaler(bundle).inverse_transform(z).astype(np.float32)


def _scaler(bundle: ModelBundle) -> Scaler:
    """The bundle's scaler; the identity (center 0, scale 1) for a bundle that expects scaled features."""
    n = len(bundle.features)
    return bundle.scaler if bundle.scaler is not None else Scaler("none", np.zeros(n), np.ones(n))


def _shape(bundle: ModelBundle, n: int) -> tuple[int, ...]:
    return (n, *bundle.view.input_shape(len(bundle.features)))


def _add_metadata(path: Path, bundle: ModelBundle) -> None:
    """What a user of the file needs to know, as ONNX metadata properties."""
    onnx = _require("onnx")[0]
    model = onnx.load(str(path))
    properties = {
        "mlfactory.model": bundle.model_name,
        "mlfactory.features": json.dumps(bundle.features),
        "mlfactory.input_kind": bundle.input_kind,
        "mlfactory.seq_len": str(bundle.seq_len),
        "mlfactory.input": "scaled features" if bundle.expects_scaled else "unscaled features (the scaler is in the graph)",
        "mlfactory.class_mapping": json.dumps(bundle.spec["class_mapping"]),
        "mlfactory.horizon": str(bundle.horizon),
        "mlfactory.version": bundle.spec["versions"]["mlfactory"],
    }
    onnx.helper.set_model_props(model, properties)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's warnings and log lines (deprecations inside torch.export, absent torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _require(*names: str) -> list[Any]:
    """The optional export libraries; only the fixed names above are imported, never one read from a bundle."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            raise ModelError(f"ONNX export needs {name}, which is not installed: {INSTALL_HINT}") from None
    return modules
