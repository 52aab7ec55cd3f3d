"""The one scaler: prepare writes, bundles predict and ONNX graphs scale with the same object and numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.contract import METADATA_FILE, split_file
from mlfactory.errors import DataError
from mlfactory.prepare import PrepareError, build_features, prepare_splits
from mlfactory.prepare.scaling import FORMULA, Scaler


def _per_column(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """How the split writer scaled before the Scaler existed: one feature at a time, float64, then float32."""
    out = np.empty(values.shape, dtype=np.float32)
    for j in range(values.shape[1]):
        out[:, j] = ((values[:, j].astype(np.float64) - center[j]) / scale[j]).astype(np.float32)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_equals_the_old_per_column_formula_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((2_500, 7)) * 1e3 + 17).astype(dtype)  # more rows than one float64 block
    scaler = Scaler.fit("robust", [values[:, j].astype(np.float64) for j in range(values.shape[1])])
    scaled = scaler.transform(values)
    assert scaled.dtype == np.float32 and scaled.flags.c_contiguous and scaled.shape == values.shape
    np.testing.assert_array_equal(scaled, _per_column(values, scaler.center, scaler.scale))
    # a transposed (non-contiguous) view, as prepare passes its (features, rows) arrays
    np.testing.assert_array_equal(scaler.transform(np.ascontiguousarray(values.T).T), scaled)


def test_fit_statistics_per_kind_and_constant_features_get_scale_one():
    columns = [np.array([1.0, 2.0, 3.0, 4.0, 100.0]), np.full(5, 3.0)]
    robust = Scaler.fit("robust", columns)
    assert robust.center.tolist() == [3.0, 3.0] and robust.scale.tolist() == [2.0, 1.0]
    standard = Scaler.fit("standard", columns)
    assert standard.center[0] == pytest.approx(22.0) and standard.scale[0] == pytest.approx(np.std(columns[0]))
    assert Scaler.fit("minmax", columns).scale.tolist() == [99.0, 1.0]
    assert Scaler.fit("none", columns).center.tolist() == [0.0, 0.0]
    with pytest.raises(PrepareError, match="unknown scaler 'zscore'; choose one of robust, standard, minmax, none"):
        Scaler.fit("zscore", columns)


def test_json_round_trips_keep_every_bit_and_the_formats_of_metadata_and_bundles():
    scaler = Scaler.fit("standard", [np.random.default_rng(1).standard_normal(50) / 3 for _ in range(3)])
    names = ["a", "b", "c"]
    bundle_form = json.loads(json.dumps(scaler.to_json()))
    assert bundle_form["kind"] == "standard" and bundle_form["formula"] == FORMULA == "(x - center) / scale"
    metadata_form = json.loads(json.dumps(scaler.to_metadata(names)))
    assert list(metadata_form) == ["scaler", "scaler_statistics", "features", "center", "scale"]
    assert metadata_form["scaler_statistics"] == {"center": "mean", "scale": "standard deviation (ddof 0)"}
    for back in (Scaler.from_json(bundle_form), Scaler.from_metadata(metadata_form, names)):
        assert back.kind == "standard"
        assert back.center.tobytes() == scaler.center.tobytes() and back.scale.tobytes() == scaler.scale.tobytes()
    # from metadata, the features come in the order asked for
    reordered = Scaler.from_metadata(metadata_form, ["c", "a"])
    assert reordered.center.tolist() == [scaler.center[2], scaler.center[0]]


def test_from_metadata_says_what_is_missing():
    with pytest.raises(DataError, match="has no per-feature 'center' and 'scale'"):
        Scaler.from_metadata({"scaler": "robust"}, ["a"])
    with pytest.raises(DataError, match=r"has no center/scale for features \['b'\]"):
        Scaler.from_metadata({"center": {"a": 0.0}, "scale": {"a": 1.0}}, ["a", "b"])


def test_inverse_transform_and_the_float32_torch_module():
    torch = pytest.importorskip("torch")
    scaler = Scaler("robust", np.array([1.5, -2.0]), np.array([0.5, 4.0]))
    z = np.random.default_rng(2).standard_normal((64, 3, 2))
    x = scaler.inverse_transform(z)
    np.testing.assert_allclose(scaler.transform(x.reshape(-1, 2)).reshape(z.shape), z, rtol=1e-6, atol=1e-6)
    x32 = torch.from_numpy(x.astype(np.float32))
    module = scaler.torch_module()
    expected = (x32 - torch.tensor([1.5, -2.0])) / torch.tensor([0.5, 4.0])  # float32 throughout, as ONNX runs it
    assert torch.equal(module(x32), expected)
    assert sorted(dict(module.named_buffers())) == ["center", "scale"]


def test_prepare_writes_the_scaler_it_records(bars_2sym, tmp_path):
    """Every feature value in a split file is the recorded scaler's transform of the unscaled feature."""
    out = prepare_splits(bars_2sym, tmp_path / "out", horizons=(5,), timeframes=("5min",))
    meta = json.loads((out / METADATA_FILE).read_text())
    scaler = Scaler.from_metadata(meta, meta["features"])
    unscaled = build_features(bars_2sym, timeframes=("5min",))
    written = pd.read_parquet(out / split_file("val"))
    joined = written[["datetime", "symbol"]].merge(unscaled, on=["datetime", "symbol"], how="left")
    assert len(joined) == len(written)
    expected = scaler.transform(joined[meta["features"]].to_numpy())
    np.testing.assert_array_equal(written[meta["features"]].to_numpy(), expected)
