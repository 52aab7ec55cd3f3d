"""ONNX export of neural bundles, checked against PyTorch through onnxruntime (optional extra `onnx`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlfactory.inference import BundleError, ModelBundle

SEQ_LEN = 8  # as in conftest.py

for module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(module, reason=f"ONNX export needs the optional extra: pip install 'mlfactory[onnx]' ({module} is missing)")


def raw_windows(frame, features: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled windows ending at every row with enough history (rows in time order per symbol), and those rows."""
    ends, windows = [], []
    for _, rows in frame.groupby("symbol", sort=False):
        values = rows[features].to_numpy(np.float32)
        for end in range(seq_len - 1, len(rows)):
            windows.append(values[end - seq_len + 1 : end + 1])
            ends.append(rows.index[end])
    return np.stack(windows), np.asarray(ends)


def test_lstm_onnx_equals_pytorch(fitted_run, raw_test, tmp_path):
    import onnx

    from mlfactory.inference.onnx import OnnxGraph, export_onnx, run_onnx

    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    path = export_onnx(bundle, tmp_path / "lstm.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["mlfactory.features"]) == bundle.features
    assert props["mlfactory.seq_len"] == str(SEQ_LEN)

    # every window of the test split, unscaled: the graph holds the scaler
    windows, ends = raw_windows(raw_test, bundle.features, SEQ_LEN)
    found = run_onnx(path, windows)
    import torch

    with torch.inference_mode():
        expected = OnnxGraph(bundle).eval()(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5)
    # and the bundle's own predictions (scaled in float64) agree to the same tolerance
    predicted = bundle.predict(raw_test).loc[ends, ["p_down", "p_neutral", "p_up"]].to_numpy()
    np.testing.assert_allclose(found, predicted, rtol=0, atol=1e-5)


def test_onnx_export_is_for_neural_bundles(fitted_run, tmp_path):
    from mlfactory.inference.onnx import export_onnx

    with pytest.raises(BundleError, match="ONNX export is for neural models; xgboost is a boosting model"):
        export_onnx(fitted_run("xgboost") / "bundle", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
