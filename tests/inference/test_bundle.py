"""Inference bundles: written by every fit, self-contained, predicting exactly as the trained model did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.errors import DataError, MLFactoryError
from mlfactory.inference import FORMAT_VERSION, BundleError, ModelBundle

SEQ_LEN, HORIZON = 8, 5  # as in conftest.py
PROBS = ["p_down", "p_neutral", "p_up"]


def copy_bundle(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run / "bundle", tmp_path / "bundle"))


@pytest.mark.parametrize("name", ["xgboost", "logistic", "lstm", "voting"])
def test_bundle_predicts_what_the_trained_model_predicted(name, fitted_run, raw_test, run_predictions, tmp_path):
    run = fitted_run(name)
    # loaded from a copy: the bundle needs neither the run's checkpoints nor the training data
    bundle = ModelBundle.load(copy_bundle(run, tmp_path))
    out = bundle.predict(raw_test)

    assert len(out) == len(raw_test)
    assert (out["datetime"].to_numpy() == pd.to_datetime(raw_test["datetime"], utc=True).to_numpy()).all()
    reference = run_predictions(run)
    merged = out.merge(reference, on=["datetime", "symbol"], how="left", validate="one_to_one")
    # the rows with a prediction are exactly the samples the trained model scored
    assert merged["has_history"].sum() == len(reference)
    assert merged.loc[merged["has_history"], "p0"].notna().all()
    scored = merged[merged["has_history"]]
    np.testing.assert_allclose(scored[PROBS].to_numpy(), scored[["p0", "p1", "p2"]].to_numpy(), rtol=0, atol=1e-6)

    classes = scored[PROBS].to_numpy().argmax(axis=1)
    assert (scored["predicted_class"].to_numpy() == classes).all()
    assert (scored["predicted_label"].to_numpy() == classes - 1).all()
    np.testing.assert_array_equal(scored["confidence"].to_numpy(), scored[PROBS].to_numpy().max(axis=1))


def test_sequence_rows_without_history_are_marked_not_invented(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    out = bundle.predict(raw_test)
    position = raw_test.groupby("symbol").cumcount().to_numpy()  # the test file is in time order per symbol
    np.testing.assert_array_equal(out["has_history"].to_numpy(), position >= SEQ_LEN - 1)
    missing = out[~out["has_history"]]
    assert len(missing) == (SEQ_LEN - 1) * raw_test["symbol"].nunique()
    assert missing[PROBS + ["confidence"]].isna().all().all()
    assert missing["predicted_class"].isna().all() and missing["predicted_label"].isna().all()


def test_sequence_windows_follow_time_not_input_order(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    expected = bundle.predict(raw_test)
    shuffled = raw_test.sample(frac=1.0, random_state=0)
    out = bundle.predict(shuffled)
    # one row out per row in, in the input's order
    pd.testing.assert_frame_equal(out.reset_index(drop=True), expected.loc[shuffled.index].reset_index(drop=True))


def test_bundle_records_what_inference_needs(fitted_run, sample_dir):
    run = fitted_run("xgboost")
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    spec = json.loads((run / "bundle" / "bundle.json").read_text())
    meta = json.loads((sample_dir / "scaling_metadata.json").read_text())
    training = json.loads((run / "config" / "training_config.json").read_text())

    files = {p.relative_to(run / "bundle").as_posix() for p in (run / "bundle").rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert {"bundle.json", "model/model.ubj"} <= set(manifest["files"])
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["model"]["library"] == "xgboost" and manifest["model"]["library_version"]
    assert manifest["mlfactory_version"] and manifest["created"]

    assert spec["model"]["name"] == "xgboost" and spec["model"]["family"] == "boosting"
    assert spec["model"]["hparams"]["n_estimators"] == 30
    assert spec["input"]["features"] == training["features"]
    assert spec["input"]["kind"] == "tabular" and spec["input"]["seq_len"] is None
    assert spec["input"]["expects"] == "unscaled"
    assert spec["input"]["scaler"]["kind"] == "robust"
    assert spec["input"]["scaler"]["center"] == [meta["center"][f] for f in spec["input"]["features"]]
    assert spec["input"]["scaler"]["scale"] == [meta["scale"][f] for f in spec["input"]["features"]]
    assert spec["horizon"] == HORIZON
    assert spec["class_mapping"] == training["class_mapping"]
    assert set(spec["training_data"]["sha256"]) == {"train", "val", "test"}
    assert spec["training_data"]["rows"] == training["data_fingerprint"]["rows"]
    assert spec["versions"]["libraries"]["xgboost"] == manifest["model"]["library_version"]

    lstm = json.loads((fitted_run("lstm") / "bundle" / "bundle.json").read_text())
    assert lstm["input"]["kind"] == "sequence" and lstm["input"]["seq_len"] == SEQ_LEN
    assert "torch" in lstm["versions"]["libraries"]


def test_a_changed_file_is_refused(fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    model = bundle / "model" / "model.ubj"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model/model\.ubj does not match its checksum"):
        ModelBundle.load(bundle)


def test_a_changed_spec_is_refused(fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    spec = json.loads((bundle / "bundle.json").read_text())
    spec["input"]["features"] = spec["input"]["features"][::-1]
    (bundle / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(BundleError, match=r"bundle\.json does not match its checksum"):
        ModelBundle.load(bundle)


def test_missing_and_unlisted_files_are_refused(fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("lstm"), tmp_path)
    (bundle / "model" / "extra.pt").write_bytes(b"not listed")
    with pytest.raises(BundleError, match=r"does not list: \['model/extra\.pt'\]"):
        ModelBundle.load(bundle)
    (bundle / "model" / "extra.pt").unlink()
    (bundle / "model" / "weights.pt").unlink()
    with pytest.raises(BundleError, match=r"model/weights\.pt is listed in manifest\.json but missing"):
        ModelBundle.load(bundle)


def test_a_newer_format_version_is_refused(fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest\.json: bundle format version 2 is newer .* reads \(up to 1\)"):
        ModelBundle.load(bundle)


def test_not_a_bundle(tmp_path, fitted_run):
    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nope")
    with pytest.raises(BundleError, match="has no manifest.json"):
        ModelBundle.load(tmp_path)
    # a run directory stands for its bundle
    assert ModelBundle.load(fitted_run("xgboost")).model_name == "xgboost"


def test_missing_features_are_named(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    with pytest.raises(DataError, match=r"missing 2 of the model's 30 feature columns: \['ret_5_1min', 'rsi_14_1min'\]"):
        bundle.predict(raw_test.drop(columns=["ret_5_1min", "rsi_14_1min"]))


def test_bad_feature_values_are_refused(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    text = raw_test.assign(ret_1_1min=raw_test["ret_1_1min"].astype(str))
    with pytest.raises(DataError, match=r"must be numbers .*'ret_1_1min'"):
        bundle.predict(text)
    holes = raw_test.copy()
    holes.loc[holes.index[5], "clv_1min"] = np.nan
    with pytest.raises(DataError, match=r"'clv_1min' has 1 missing, NaN or infinite value\(s\) \(first at input row 5\)"):
        bundle.predict(holes)


def test_sequence_input_needs_time_order_per_symbol(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    with pytest.raises(DataError, match="no 'datetime' column"):
        bundle.predict(raw_test.drop(columns=["datetime"]))
    twice = pd.concat([raw_test.iloc[:20], raw_test.iloc[[10]]])
    with pytest.raises(DataError, match=r"symbol 'SYNA' has two rows at .*input row 20"):
        bundle.predict(twice)
    with pytest.raises(DataError, match="cannot be read as timestamps"):
        bundle.predict(raw_test.assign(datetime="yesterday-ish"))


def test_text_and_naive_timestamps_are_utc(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    expected = bundle.predict(raw_test)
    naive = raw_test.assign(datetime=pd.to_datetime(raw_test["datetime"], utc=True).dt.tz_localize(None))
    text = raw_test.assign(datetime=pd.to_datetime(raw_test["datetime"], utc=True).astype(str))
    pd.testing.assert_frame_equal(bundle.predict(naive), expected)
    pd.testing.assert_frame_equal(bundle.predict(text), expected)


def test_without_scaling_metadata_the_bundle_expects_scaled_features(fitted_run, sample_dir, tmp_path):
    from mlfactory import FactoryDataModule
    from mlfactory.inference import write_bundle

    data = Path(shutil.copytree(sample_dir, tmp_path / "data"))
    (data / "scaling_metadata.json").unlink()
    datamodule = FactoryDataModule(data_dir=str(data), horizon=HORIZON)
    datamodule.setup("fit")
    fitted = ModelBundle.load(fitted_run("xgboost") / "bundle").module
    path = write_bundle(fitted, datamodule, tmp_path / "run")

    bundle = ModelBundle.load(path)
    assert bundle.expects_scaled and bundle.spec["input"]["expects"] == "scaled"
    assert bundle.spec["training_data"]["scaling_metadata_sha256"] is None
    scaled = pd.read_parquet(data / "test_scaled.parquet")
    x = scaled[bundle.features].to_numpy(np.float32)
    np.testing.assert_array_equal(bundle.predict(scaled)[PROBS].to_numpy(), fitted.estimator_proba(x).astype(np.float32))


def test_bundle_errors_are_mlfactory_errors():
    from mlfactory.errors import RunError

    assert issubclass(BundleError, RunError) and issubclass(BundleError, MLFactoryError)


def test_tabular_input_needs_only_the_features(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    expected = bundle.predict(raw_test)
    out = bundle.predict(raw_test[bundle.features[::-1]])  # any column order, no identity columns
    assert out["datetime"].isna().all() and (out["symbol"] == "").all()
    pd.testing.assert_frame_equal(out.drop(columns=["datetime", "symbol"]), expected.drop(columns=["datetime", "symbol"]))


@pytest.mark.parametrize("name", ["xgboost", "logistic", "lstm", "voting"])
def test_the_model_reads_back_what_export_native_wrote(name, fitted_run):
    """load_native is the inverse of export_native: a model built from its arguments predicts as the bundle does."""
    from mlfactory import create_model

    bundle = ModelBundle.load(fitted_run(name))
    # its arguments, without the sizes taken from the data: load_native reads those (ensemble members too)
    arguments = {k: v for k, v in bundle.spec["model"]["hparams"].items() if k != "n_features"}
    restored = create_model(name, **arguments).load_native(fitted_run(name) / "checkpoints" / "best_model")
    shape = (16, SEQ_LEN, len(bundle.features)) if bundle.input_kind == "sequence" else (16, len(bundle.features))
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    probs = restored.predict_proba_array(x)
    assert probs.dtype == np.float32 and probs.shape == (16, 3)
    np.testing.assert_array_equal(probs, bundle.predict_proba(x))
    assert restored.library_versions() == bundle.module.library_versions()
    assert bundle.view.input_shape(len(bundle.features)) == shape[1:]


def test_a_model_file_its_library_cannot_read_names_the_file(fitted_run, tmp_path):
    from mlfactory import create_model
    from mlfactory.models.base import NativeFileError

    folder = Path(shutil.copytree(fitted_run("xgboost") / "checkpoints" / "best_model", tmp_path / "best_model"))
    (folder / "model.ubj").write_bytes(b"not a booster")
    with pytest.raises(NativeFileError, match=r"best_model/model\.ubj: cannot be read as the xgboost model file"):
        create_model("xgboost").load_native(folder)
