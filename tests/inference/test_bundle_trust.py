"""A bundle is input from outside: it names only registered models, signatures authenticate it, and bad
files, paths and devices end in one line, never in a traceback, a crash or a command of the bundle's choosing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.errors import ConfigError
from mlfactory.inference import BundleError, ModelBundle
from mlfactory.inference.bundle import sign_bundle
from mlfactory.inference.signing import KEY_ENV, KEY_FILE_ENV, SIGNATURE_FILE, key_id

REPO = Path(__file__).resolve().parents[2]
KEY = "a-test-key-that-is-long-enough-0123456789"
OTHER_KEY = "another-test-key-also-long-enough-9876543210"


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    """Each test starts without a bundle key, whatever the environment of the test run holds."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def copy_bundle(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run / "bundle", tmp_path / "bundle"))


def tamper(bundle: Path, name: str, data: bytes) -> None:
    """Replace a bundle file and recompute its checksum in the manifest, as anyone who reads the format can."""
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def edit_spec(bundle: Path, change) -> None:
    spec = json.loads((bundle / "bundle.json").read_text())
    change(spec)
    tamper(bundle, "bundle.json", json.dumps(spec, indent=2).encode())


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfactory: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def features(raw_test, tmp_path) -> Path:
    path = tmp_path / "features.parquet"
    raw_test.to_parquet(path)
    return path


def predict_args(bundle: Path, features: Path, output: Path, *extra: str) -> list[str]:
    return ["predict", "--bundle", str(bundle), "--input", str(features), "--output", str(output), "--no_progress", *extra]


# --- 1. a bundle names registered models; it never imports or calls what it likes ----------------------
def test_a_bundle_cannot_run_a_command(fitted_run, features, tmp_path, capsys):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    marker = tmp_path / "pwned"
    edit_spec(bundle, lambda s: s["model"].update(name="innocent", class_path="os.system",
                                                  hparams={"command": f"touch {marker}"}))
    assert main(predict_args(bundle, features, tmp_path / "preds.parquet")) == 1
    err = one_line_error(capsys)
    assert "names model 'innocent' (os.system), which is not registered" in err
    assert not marker.exists()
    assert not (tmp_path / "preds.parquet").exists()


def test_a_registered_name_with_another_class_path_is_refused(fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    marker = tmp_path / "pwned"
    edit_spec(bundle, lambda s: s["model"].update(class_path="os.system", hparams={"command": f"touch {marker}"}))
    with pytest.raises(BundleError, match=r"says model 'xgboost' is os\.system, but 'xgboost' is registered here as "
                                          r"mlfactory\.models\.boosting\.xgboost\."):
        ModelBundle.load(bundle)
    assert not marker.exists()


@pytest.mark.parametrize("member", [{"name": "innocent", "class_path": "os.system"},
                                    {"name": "xgboost", "class_path": "os.system"}])
def test_an_ensemble_member_cannot_name_a_foreign_class(member, fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("voting"), tmp_path)
    marker = tmp_path / "pwned"
    edit_spec(bundle, lambda s: s["model"]["members"][0].update(member, hparams={"command": f"touch {marker}"}))
    with pytest.raises(BundleError, match=r"member 0\).*(not registered|registered here as)") as caught:
        ModelBundle.load(bundle)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_library_names_in_the_bundle_are_not_imported(fitted_run, tmp_path, monkeypatch):
    # bundle.json records library versions; loading imports only what the registered class needs
    modules = tmp_path / "modules"
    modules.mkdir()
    marker = tmp_path / "imported"
    (modules / "planted_module_h1.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(modules))
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    edit_spec(bundle, lambda s: s["versions"]["libraries"].update(planted_module_h1="1.0"))
    ModelBundle.load(bundle)
    assert not marker.exists() and "planted_module_h1" not in sys.modules


# --- 2. signatures ---------------------------------------------------------------------------------------
def test_a_signed_bundle_verifies_and_predicts_the_same(fitted_run, raw_test, tmp_path, monkeypatch):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    expected = ModelBundle.load(bundle).predict(raw_test)
    monkeypatch.setenv(KEY_ENV, KEY)
    sign_bundle(bundle)

    signature = json.loads((bundle / SIGNATURE_FILE).read_text())
    assert signature["algorithm"] == "hmac-sha256" and signature["key_id"] == key_id(KEY.encode())
    assert KEY not in (bundle / SIGNATURE_FILE).read_text()
    loaded = ModelBundle.load(bundle, require_signature=True)
    assert loaded.signed_by == key_id(KEY.encode())
    pd.testing.assert_frame_equal(loaded.predict(raw_test), expected)

    # the same key from a file (a trailing newline does not count)
    monkeypatch.delenv(KEY_ENV)
    (tmp_path / "key").write_text(KEY + "\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "key"))
    assert ModelBundle.load(bundle, require_signature=True).signed_by == key_id(KEY.encode())


def test_bundles_written_with_a_key_are_signed(fitted_run, sample_dir, tmp_path, monkeypatch):
    from mlfactory import FactoryDataModule
    from mlfactory.inference import write_bundle

    datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=5)
    datamodule.setup("fit")
    fitted = ModelBundle.load(fitted_run("xgboost") / "bundle").module
    # a temporary of an earlier write that was killed (its process is gone) is cleaned up
    dead = _dead_pid()
    stale = tmp_path / "run" / f"bundle.{dead}-0123abcd.partial"
    (stale / "model").mkdir(parents=True)
    with pytest.raises(BundleError, match=r"unfinished temporary \(\.partial\)"):
        ModelBundle.load(stale)

    monkeypatch.setenv(KEY_ENV, KEY)
    path = write_bundle(fitted, datamodule, tmp_path / "run")
    assert (path / SIGNATURE_FILE).is_file() and not stale.exists()
    assert ModelBundle.load(path, require_signature=True).signed_by == key_id(KEY.encode())


def test_a_tampered_signed_bundle_is_refused_before_any_parser(fitted_run, features, tmp_path, monkeypatch):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    sign_bundle(bundle)
    # this byte makes xgboost's UBJSON parser crash the process (segmentation fault, no message)
    data = bytearray((bundle / "model" / "model.ubj").read_bytes())
    data[7] ^= 0xFF
    tamper(bundle, "model/model.ubj", bytes(data))
    # in a child process, so a parser that is reached cannot take the test run down with it
    result = subprocess.run(
        [sys.executable, "-m", "mlfactory.cli", *predict_args(bundle, features, tmp_path / "preds.parquet")],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, KEY_ENV: KEY},
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "signature.json: the signature does not verify" in err[0], err
    assert not (tmp_path / "preds.parquet").exists()


def test_a_signature_that_does_not_verify_is_always_refused(fitted_run, tmp_path, monkeypatch):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    sign_bundle(bundle)
    edit_spec(bundle, lambda s: s["input"].update(features=s["input"]["features"][::-1]))
    with pytest.raises(BundleError, match="the signature does not verify"):
        ModelBundle.load(bundle)  # without require_signature too


def test_a_bundle_signed_with_another_key_is_refused(fitted_run, features, tmp_path, monkeypatch, capsys):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    sign_bundle(bundle, OTHER_KEY.encode())
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(predict_args(bundle, features, tmp_path / "preds.parquet")) == 1
    err = one_line_error(capsys)
    assert f"signed with another key (key id {key_id(OTHER_KEY.encode())}" in err
    assert KEY not in err and OTHER_KEY not in err


def test_require_signature_refuses_unsigned_bundles_and_a_missing_key(fitted_run, features, tmp_path, monkeypatch,
                                                                       capsys):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    output = tmp_path / "preds.parquet"
    assert main(predict_args(bundle, features, output, "--require-signature")) == 1
    assert "is not signed, and a signature is required" in one_line_error(capsys)
    with pytest.raises(BundleError, match="is not signed"):
        ModelBundle.load(bundle, require_signature=True)
    # signed, but no key here to check it with: loads unverified unless a signature is required
    sign_bundle(bundle, KEY.encode())
    assert main(predict_args(bundle, features, output, "--require-signature")) == 1
    assert "is signed, but no bundle key is configured" in one_line_error(capsys)
    with pytest.warns(UserWarning, match="signature is not checked"):
        assert ModelBundle.load(bundle).signed_by is None
    assert not output.exists()
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(predict_args(bundle, features, output, "--require-signature")) == 0 and output.is_file()


def test_key_configuration_errors_are_one_line(fitted_run, tmp_path, monkeypatch, capsys):
    bundle = copy_bundle(fitted_run("xgboost"), tmp_path)
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(BundleError, match="has 5 bytes; a bundle key needs at least 16"):
        ModelBundle.load(bundle)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "no-such-key"))
    with pytest.raises(BundleError, match="both MLFACTORY_BUNDLE_KEY and MLFACTORY_BUNDLE_KEY_FILE are set"):
        sign_bundle(bundle)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BundleError, match="cannot read the bundle key file .*no-such-key"):
        sign_bundle(bundle)
    monkeypatch.delenv(KEY_FILE_ENV)
    assert main(["sign", "--bundle", str(bundle)]) == 1
    assert "no bundle key is configured" in one_line_error(capsys)
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(["sign", "--bundle", str(bundle)]) == 0
    assert f"with key id {key_id(KEY.encode())}" in capsys.readouterr().err
    # only an intact bundle is signed
    (bundle / "model" / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match="does not list"):
        sign_bundle(bundle)


# --- 3. model files that are not what they claim -----------------------------------------------------------
def _zip_bytes(tmp_path: Path) -> bytes:
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:
        archive.writestr("hello.txt", "not a skops file")
    return (tmp_path / "x.zip").read_bytes()


@pytest.mark.parametrize("content", ["random", "zip", "truncated"])
def test_a_skops_file_that_is_not_skops_is_one_line(content, fitted_run, tmp_path):
    bundle = copy_bundle(fitted_run("logistic"), tmp_path)
    original = (bundle / "model" / "model.skops").read_bytes()
    data = {"random": np.random.default_rng(0).bytes(4096), "zip": _zip_bytes(tmp_path),
            "truncated": original[: len(original) // 2]}[content]
    tamper(bundle, "model/model.skops", data)
    with pytest.raises(BundleError, match=r"model/model\.skops: cannot be read as the sklearn model file") as caught:
        ModelBundle.load(bundle)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name,content", [("lstm", "random"), ("lstm", "truncated"), ("voting", "random")])
def test_a_weights_file_that_is_not_weights_is_one_line(name, content, fitted_run, features, tmp_path, capsys):
    bundle = copy_bundle(fitted_run(name), tmp_path)
    relative = next(p.relative_to(bundle).as_posix() for p in sorted(bundle.rglob("weights.pt")))
    original = (bundle / relative).read_bytes()
    data = np.random.default_rng(0).bytes(4096) if content == "random" else original[: len(original) // 2]
    tamper(bundle, relative, data)
    assert main(predict_args(bundle, features, tmp_path / "preds.parquet")) == 1
    assert f"{relative}: cannot be read as the torch model file" in one_line_error(capsys)


# --- 4-6. paths, devices, empty inputs ------------------------------------------------------------------
def test_the_output_cannot_be_the_input(fitted_run, features, tmp_path, capsys):
    bundle = fitted_run("xgboost") / "bundle"
    before = features.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.parquet").symlink_to(features)
    for output in (features, tmp_path / "sub" / ".." / features.name, tmp_path / "link.parquet"):
        assert main(predict_args(bundle, features, output, "--overwrite")) == 1
        assert "is the input file" in one_line_error(capsys)
    os.link(features, tmp_path / "hardlink.parquet")
    assert main(predict_args(bundle, features, tmp_path / "hardlink.parquet", "--overwrite")) == 1
    assert "is the input file" in one_line_error(capsys)
    assert features.read_bytes() == before


def test_devices_that_do_not_exist_are_one_line(fitted_run, features, tmp_path, capsys):
    import torch

    bundle = fitted_run("lstm") / "bundle"
    output = tmp_path / "preds.parquet"
    assert main(predict_args(bundle, features, output, "--device", "banana")) == 1
    assert "device 'banana' is not a torch device; choose one of: cpu" in one_line_error(capsys)
    assert main(predict_args(bundle, features, output, "--device", "cuda:99")) == 1
    assert "device 'cuda:99' is not available" in one_line_error(capsys)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda' is not available: this machine has no CUDA device .*"
                                              r"choose one of: cpu"):
            ModelBundle.load(bundle, device="cuda")
    assert not output.exists()


def test_empty_inputs_are_refused_alike(fitted_run, raw_test, tmp_path, capsys):
    bundle = fitted_run("xgboost") / "bundle"
    raw_test.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    raw_test.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    (tmp_path / "nothing.csv").write_text("")
    for name in ("empty.parquet", "empty.csv", "nothing.csv"):
        assert main(predict_args(bundle, tmp_path / name, tmp_path / "preds.parquet")) == 1
        assert "no rows to predict" in one_line_error(capsys)
    assert not (tmp_path / "preds.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "empty.parquet", "nothing.csv"]


# --- 7. what a killed run leaves behind ---------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_a_killed_run_are_removed_by_the_next(fitted_run, raw_test, tmp_path, capsys):
    bundle = fitted_run("xgboost") / "bundle"
    features = tmp_path / "features.parquet"
    pd.concat([raw_test] * 20, ignore_index=True).to_parquet(features, row_group_size=1000)
    output = tmp_path / "preds.parquet"
    child = subprocess.Popen(
        [sys.executable, "-m", "mlfactory.cli", *predict_args(bundle, features, output, "--chunk_rows", "5")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("preds.parquet.*.partial")) and child.poll() is None:
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = list(tmp_path.glob("preds.parquet.*.partial"))
    assert left and not output.exists()  # what SIGKILL leaves: a temporary no loader takes for output
    assert left[0].name.startswith(f"preds.parquet.{child.pid}-")  # the writer's pid: who may clean it up

    # the temporaries of another output, and of a writer that still runs, are not touched
    others = [tmp_path / f"other.parquet.{_dead_pid()}-0123abcd.partial",
              tmp_path / f"preds.parquet.{os.getpid()}-0123abcd.partial"]
    for path in others:
        path.write_bytes(b"in progress")
    assert main(predict_args(bundle, features, output)) == 0
    assert not any(p.exists() for p in left) and all(p.exists() for p in others)
    pd.testing.assert_frame_equal(pd.read_parquet(output), ModelBundle.load(bundle).predict(pd.read_parquet(features)))
