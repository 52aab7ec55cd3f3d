"""Write a run's inference bundle and load it back: the best model with everything needed to predict.

A bundle is a directory (``<run>/bundle/``) that needs neither the training data nor the checkpoint:

```
bundle/
  manifest.json      format_version, sha256 of every other file, created, mlfactory and library versions
  signature.json     HMAC-SHA256 of manifest.json with the bundle key, and the key's id (when a key is set)
  bundle.json        model (registry name, class path, family, hyper-parameters), input (features in
                     order, input kind, seq_len, scaler; prepare's recipe and each feature's measured
                     warm-up, for raw bars), horizon, class mapping, training-data fingerprint
  model/             the model as the run's checkpoints/best_model/ holds it (``export_native``):
                     model.<suffix> (estimators), weights.pt + hparams.json (neural),
                     members/<i>_<name>/... + ensemble.json (ensembles)
```

A bundle is input from outside, so loading is a trust boundary (docs/inference.md, "Trust"): the
signature is checked first (a signed bundle that does not verify is always refused; ``require_signature``
refuses unsigned ones too), then every checksum, before any file but the manifest is parsed and before
a native parser (xgboost, lightgbm, catboost, skops, torch) sees a byte. The model is rebuilt only
through the class registered under its name, which reads its own files (``load_native``, the inverse
of the ``export_native`` that wrote them), never through an import path read from the bundle, so the
bundle predicts through the same code as the trained model and can run nothing else. The bundle asks
the model, never its family: the libraries it needs, how to read its files, its probabilities of an
array (``predict_proba_array``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import shutil
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlfactory.data.container import METADATA_FILE, class_mapping
from mlfactory.errors import BundleError, ConfigError, MLFactoryError, RegistryError
from mlfactory.atomic import is_partial, partial_path, remove_stale_partials, replace_dir, sha256_file
from mlfactory.inference.signing import KEY_HINT, SIGNATURE_FILE, signing_key, verify_signature, write_signature
from mlfactory.prepare.scaling import Scaler

if TYPE_CHECKING:
    import pandas as pd

    from mlfactory.data.views import InputView
    from mlfactory.inference.predictor import Predictor
    from mlfactory.prepare.recipe import Recipe

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "bundle.json"
MODEL_DIR = "model"
BUNDLE_DIR = "bundle"



# --- writing ---------------------------------------------------------------------------------------
def write_bundle(module: Any, datamodule: Any, run_dir: str | Path) -> Path | None:
    """Write ``run_dir/bundle/`` for a fitted ``module`` trained on ``datamodule``; return its path.

    The directory is built beside its final place and renamed into it when complete, so a bundle is
    either whole or absent. When a bundle key is configured (:func:`signing_key`), the bundle is signed.
    A multi-resolution model's bundle reads raw bars only (``ModelBundle.predict_bars``).
    """
    container = datamodule.container
    view = module.input_view(datamodule.seq_len)
    if not view.reads_feature_columns and not dict(module.hparams.get("lookbacks") or {}):
        warnings.warn(f"{type(module).__name__} reads {view.kind!r} input but records no lookbacks; no inference "
                      "bundle written (the checkpoint and best_model/ reload it)")
        return None

    key = signing_key()  # a misconfigured key fails before anything is written
    target = Path(run_dir) / BUNDLE_DIR
    remove_stale_partials(target)
    tmp = partial_path(target)
    tmp.mkdir(parents=True)
    try:
        module.export_native(tmp / MODEL_DIR)
        spec = {
            "format_version": FORMAT_VERSION,
            "created": _now(),
            "model": _model_spec(module),
            "input": _input_spec(container, view, module),
            "horizon": int(container.horizon),
            "class_mapping": class_mapping(),
            "training_data": _fingerprint(container),
            "versions": _versions(module),
        }
        _write_json(tmp / SPEC_FILE, spec)
        _write_manifest(tmp, spec, module.library)
        if key is not None:
            write_signature(tmp, key)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _model_spec(module: Any) -> dict[str, Any]:
    members = module.fitted_members()
    spec = {
        "name": module.registry_name,
        "class_path": _class_path(module),
        "family": module.family,  # for people reading the bundle; never read back
        # format 1 names how the model is rebuilt; only older mlfactory versions read it back
        "kind": "ensemble" if members else ("estimator" if module.fits_once else "neural"),
        "hparams": module.hyperparameters(),
    }
    if members:
        # the combiner is in model/ensemble.json (export_native); members' own arguments are here
        spec["members"] = [
            {"name": m.registry_name, "class_path": _class_path(m), "hparams": m.hyperparameters()}
            for m in members
        ]
    return spec


def _input_spec(container: Any, view: Any, module: Any) -> dict[str, Any]:
    from mlfactory.inference.bars import recipe_spec

    features = list(container.feature_names)
    scaler = _scaler(container.metadata, features, container.data_dir)
    if view.kind == "multires":  # windows of raw-bar bins per timeframe, built as training did (data/multires.py)
        lookbacks = {str(k): int(v) for k, v in dict(module.hparams["lookbacks"]).items()}
        return {"kind": view.kind, "seq_len": None, "features": [], "expects": "raw bars", "scaler": None,
                "multires": {"timeframes": list(lookbacks), "lookback": lookbacks},
                **recipe_spec(container, view)}
    return {
        "kind": view.kind,
        "seq_len": view.seq_len,
        "features": features,
        "expects": "unscaled" if scaler is not None else "scaled",
        "scaler": scaler,
        **recipe_spec(container, view),  # recipe + warmup: raw bars in (docs/inference.md, "Raw bars")
    }


def _scaler(metadata: dict | None, features: list[str], data_dir: Path | None) -> dict[str, Any] | None:
    """(x - center) / scale per feature from scaling_metadata.json, or None (the bundle expects scaled features)."""
    if metadata is None:
        return None
    try:
        return Scaler.from_metadata(metadata, features).to_json()
    except MLFactoryError as err:
        warnings.warn(f"{data_dir}/{METADATA_FILE} {err}; the bundle expects scaled features")
        return None


def _fingerprint(container: Any) -> dict[str, Any]:
    """What identifies the training data: the container's description plus sha256 of each split's arrays."""
    digests = {}
    for name, split in container.splits.items():
        digest = hashlib.sha256()
        for array in (split.features, split.labels, split.timestamps, split.symbol_codes):
            digest.update(np.ascontiguousarray(array).view(np.uint8))
        digest.update("\0".join(split.symbols).encode())
        digests[name] = digest.hexdigest()
    fingerprint = dict(container.fingerprint())
    fingerprint["sha256"] = digests
    fingerprint["sha256_covers"] = "float32 features, classes, timestamps and symbols of each split as loaded"
    metadata_path = Path(container.data_dir) / METADATA_FILE if container.data_dir is not None else None
    fingerprint["scaling_metadata_sha256"] = (
        sha256_file(metadata_path) if metadata_path is not None and metadata_path.is_file() else None
    )
    return fingerprint


def _versions(module: Any) -> dict[str, Any]:
    from mlfactory.version import __version__

    return {
        "mlfactory": __version__,
        "python": platform.python_version(),
        "libraries": module.library_versions(),
    }


def _write_manifest(directory: Path, spec: dict[str, Any], library: str) -> None:
    """``manifest.json``: every file's sha256, and ``library``, whose format the model's own file is in."""
    files = {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    libraries = spec["versions"]["libraries"]
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": spec["created"],
        "mlfactory_version": spec["versions"]["mlfactory"],
        "model": {
            "name": spec["model"]["name"],
            "library": library,
            "library_version": spec["versions"]["mlfactory"] if library == "mlfactory" else libraries[library],
            "libraries": libraries,
        },
        "files": files,
    }
    _write_json(directory / MANIFEST_FILE, manifest)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an older bundle there (a resumed fit) is replaced."""
    replace_dir(tmp, target)


# --- signing (the key and the signature itself: inference/signing.py) ---------------------------------
def sign_bundle(path: str | Path, key: bytes | None = None) -> Path:
    """Sign the intact bundle at ``path`` (or a run's ``bundle/``) with ``key`` (default: :func:`signing_key`).

    Every checksum is verified first, so only a bundle that is as its manifest says gets signed; an
    existing signature is replaced. Sign only bundles you trust: the signature vouches for them.

    Raises:
        BundleError: no key, or the bundle is missing or damaged.
    """
    key = signing_key() if key is None else key
    if key is None:
        raise BundleError(f"no bundle key is configured, so there is nothing to sign with; {KEY_HINT}")
    directory = _bundle_dir(path)
    remove_stale_partials(directory / SIGNATURE_FILE)  # an earlier signing that was killed
    manifest = _parse_manifest(directory, _read_manifest_bytes(directory))
    _verify_files(directory, manifest)
    write_signature(directory, key)
    return directory


# --- loading ---------------------------------------------------------------------------------------
class ModelBundle:
    """A loaded, verified inference bundle.

    ``ModelBundle.load(path).predict(frame)`` takes a DataFrame of **unscaled** features (every column of
    :attr:`features`; for sequence models also ``datetime``, and ``symbol`` when there are several
    series) and returns one row per input row: ``datetime``, ``symbol``, ``p_down``, ``p_neutral``,
    ``p_up``, ``predicted_class``, ``predicted_label``, ``confidence`` and ``has_history``.
    ``predict_bars(bars)`` takes raw OHLCV bars instead and computes the features with prepare's own
    code (:mod:`mlfactory.inference.bars`).

    Attributes:
        path: the bundle directory.
        spec: the parsed ``bundle.json``.
        manifest: the parsed ``manifest.json``.
        module: the rebuilt model (a ``FactoryModule`` in eval mode).
        signed_by: the key id of the verified signature, or None when the bundle was loaded unverified.
    """

    def __init__(
        self, path: Path, spec: dict[str, Any], manifest: dict[str, Any], module: Any, device: str,
        signed_by: str | None = None,
    ) -> None:
        self.path = path
        self.spec = spec
        self.manifest = manifest
        self._told_unmeasured = False
        self.module = module
        self.device = device
        self.signed_by = signed_by
        scaler = spec["input"]["scaler"]
        self.scaler = Scaler.from_json(scaler) if scaler else None

    # --- what the bundle says -------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        """Feature columns the model reads, in its order."""
        return list(self.spec["input"]["features"])

    @property
    def input_kind(self) -> str:
        """``tabular`` (one row per sample) or ``sequence`` (a window of ``seq_len`` rows)."""
        return self.spec["input"]["kind"]

    @property
    def view(self) -> "InputView":
        """The model's input view: its kind, ``seq_len`` and one sample's shape (``view.input_shape(n_features)``)."""
        from mlfactory.data.views import InputView

        return InputView.of(self.input_kind, self.spec["input"]["seq_len"], reader=str(self.path))

    @property
    def seq_len(self) -> int:
        """Rows per window; 1 for tabular models."""
        return int(self.spec["input"]["seq_len"] or 1)

    @property
    def horizon(self) -> int:
        return int(self.spec["horizon"])

    @property
    def model_name(self) -> str:
        return self.spec["model"]["name"]

    @property
    def expects_scaled(self) -> bool:
        """True when the training data had no scaler in scaling_metadata.json: features pass through as given."""
        return self.scaler is None

    @property
    def class_names(self) -> list[str]:
        mapping = self.spec["class_mapping"]
        return [mapping[str(i)]["name"] for i in range(len(mapping))]

    @property
    def class_labels(self) -> list[int]:
        mapping = self.spec["class_mapping"]
        return [int(mapping[str(i)]["label"]) for i in range(len(mapping))]

    @functools.cached_property
    def recipe(self) -> "Recipe":
        """Prepare's recipe: how raw bars become this model's features (read from bundle.json once; the
        service asks on every request).

        Raises:
            BundleError: the bundle has none (written before raw-bar bundles, or from data not made by prepare).
        """
        from mlfactory.inference.bars import NO_RECIPE
        from mlfactory.prepare.recipe import Recipe

        payload = self.spec["input"].get("recipe")
        if not isinstance(payload, dict):
            raise BundleError(NO_RECIPE.format(where=self.path))
        try:
            return Recipe.from_json(payload)
        except (KeyError, TypeError, ValueError, MLFactoryError) as err:
            raise BundleError(f"{self.path / SPEC_FILE}: input.recipe is unreadable ({_one_line(err)}); the bundle is "
                              "damaged") from None

    @property
    def has_recipe(self) -> bool:
        """True when the bundle can predict from raw bars (:meth:`predict_bars`)."""
        return isinstance(self.spec["input"].get("recipe"), dict)

    @property
    def required_history(self) -> int:
        """Base bars a bar needs before it, in the input, for its features to equal prepare's (the measured
        warm-up of the model's features; for sequence models each of the window's rows needs it too)."""
        from mlfactory.prepare.recipe import required_history

        warmup = self.spec["input"].get("warmup")
        if self.input_kind == "multires":  # lookback complete bins of each timeframe, one more for where bins start
            from mlfactory.prepare import timeframes as tfs

            base = self.recipe.base_ns
            lookback = self.spec["input"]["multires"]["lookback"]
            return max((int(n) + 1) * (tfs.parse(tf) // base) for tf, n in lookback.items())
        if not isinstance(warmup, dict):
            self.recipe  # no recipe: the one-line error
            raise BundleError(f"{self.path / SPEC_FILE}: input.warmup is missing; the bundle is damaged")
        need = required_history(warmup, self.features)
        unmeasured = [f for f in warmup.get("unmeasured", ()) if f in self.features]
        if unmeasured and not self._told_unmeasured:  # once per bundle: serve asks on every request
            self._told_unmeasured = True
            warnings.warn(f"{self.path}: the warm-up of {len(unmeasured)} feature(s) (e.g. {unmeasured[0]}) could "
                          f"not be measured on the training bars, so raw-bar prediction requires {need:,} earlier "
                          "bars (the measured span); more training bars give a measured figure", stacklevel=2)
        return need

    def __repr__(self) -> str:
        window = f", seq_len={self.seq_len}" if self.view.windowed else ""
        return f"ModelBundle({self.model_name!r}, {len(self.features)} features, {self.input_kind}{window}, path={str(self.path)!r})"

    # --- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", require_signature: bool = False) -> "ModelBundle":
        """Verify and load the bundle at ``path`` (a run directory works too: its ``bundle/`` is used).

        In this order, each before anything later reads a byte: the signature (when the bundle is signed
        and a key is configured; with ``require_signature``, an unsigned bundle or a missing key is
        refused too), the manifest, every file's checksum, the model's registry class, and only then the
        model's files, through its library's parser.

        Raises:
            BundleError: the directory or manifest is missing, the signature does not verify (or is
                required and absent), the format version is newer than this mlfactory reads, a file is
                missing, unlisted or does not match its checksum, the model is not registered here (or
                registered as another class), or a model file cannot be parsed.
            ConfigError: ``device`` is not a device this machine has.
        """
        device = check_device(device)
        directory = _bundle_dir(path)
        manifest_bytes = _read_manifest_bytes(directory)
        signed_by = verify_signature(directory, manifest_bytes, require_signature)
        manifest = _parse_manifest(directory, manifest_bytes)
        _verify_files(directory, manifest)
        spec = _read_json(directory / SPEC_FILE)
        classes = _registered_classes(directory, spec)
        _check_versions(directory, spec, classes)
        module = _load_module(directory, spec, classes, device)
        return cls(directory, spec, manifest, module, device, signed_by)

    # --- predicting -----------------------------------------------------------------------------
    def predict(self, frame: "pd.DataFrame", batch_size: int = 2048) -> "pd.DataFrame":
        """Predictions for every row of ``frame``, in its row order (see the class docstring).

        A sequence model builds each row's window from the ``seq_len - 1`` rows of the same symbol
        before it (by ``datetime``). Rows with fewer earlier rows get NaN probabilities, no class and
        ``has_history = False``: nothing is invented.

        Raises:
            DataError: a feature column is missing (all are named), not numeric, or not finite; the
                ``datetime`` column is missing (sequence models) or unreadable; a symbol repeats a timestamp.
        """
        if self.input_kind == "multires":
            raise BundleError(f"{self.path} is a multi-resolution model, which reads raw bars, not feature tables; "
                              "use predict_bars (mlfactory predict --bundle B --input bars.csv)")
        return self.predictor(batch_size=batch_size)(frame)

    def predict_bars(self, bars: "pd.DataFrame | str | Path", batch_size: int = 2048) -> "pd.DataFrame":
        """Predictions from raw OHLCV bars (a DataFrame, a CSV/parquet file or a directory, as prepare reads them).

        The features are computed by prepare's own code with the bundle's recipe, scaled and predicted;
        one row per real base bar (gap-filled bars are not predicted), sorted by symbol and time, with the
        columns of :meth:`predict`. A bar with fewer than :attr:`required_history` bars before it in the
        input (plus ``seq_len - 1`` rows for sequence models) has ``has_history = False`` and no probabilities.

        Raises:
            BundleError: the bundle has no recipe (one line says why and what to do).
            PrepareError: the bars are unreadable or wrong.
        """
        from mlfactory.inference.bars import predict_bars

        return predict_bars(self, bars, batch_size=batch_size)

    def predictor(self, batch_size: int = 2048) -> "Predictor":
        """A stateful predictor for consecutive chunks of one input: each chunk's windows may reach back
        into the rows of earlier chunks, so chunked results equal unchunked ones."""
        from mlfactory.inference.predictor import Predictor

        return Predictor(self, batch_size=batch_size)

    def transform(self, frame: "pd.DataFrame", first_row: int = 0) -> np.ndarray:
        """The model's (n, n_features) float32 input from ``frame``: columns in order, scaled, checked.

        ``first_row`` is the input row number of ``frame``'s first row, for error messages.
        """
        from mlfactory.inference.predictor import feature_matrix

        return feature_matrix(frame, self.features, self.scaler, first_row)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) float32 probabilities of model inputs ``x``: (n, n_features) rows or (n, seq_len, n_features) windows."""
        return self.module.predict_proba_array(x)


def _bundle_dir(path: str | Path) -> Path:
    """The bundle folder: ``path`` itself, or a run directory's ``bundle/``; never an unfinished temporary."""
    directory = Path(path)
    if not (directory / MANIFEST_FILE).is_file() and (directory / BUNDLE_DIR / MANIFEST_FILE).is_file():
        directory = directory / BUNDLE_DIR
    if is_partial(directory):
        raise BundleError(
            f"{directory} is an unfinished temporary (.partial) of a bundle being written, or left by a writer that "
            "was stopped; it is never loaded. Pass the finished bundle/ folder"
        )
    if not directory.is_dir():
        raise BundleError(f"bundle directory {directory} does not exist; pass a run's bundle/ folder (written by every fit)")
    if not (directory / MANIFEST_FILE).is_file():
        raise BundleError(
            f"{directory} has no {MANIFEST_FILE}, so it is not an inference bundle (or it is incomplete); "
            "pass a run's bundle/ folder"
        )
    return directory


def _read_manifest_bytes(directory: Path) -> bytes:
    try:
        return (directory / MANIFEST_FILE).read_bytes()
    except OSError as err:
        raise BundleError(f"cannot read {directory / MANIFEST_FILE} ({err.strerror or err})") from None


def _parse_manifest(directory: Path, data: bytes) -> dict[str, Any]:
    """The manifest from its bytes (already authenticated when the bundle is signed), with its version checked."""
    try:
        manifest = json.loads(data)
    except ValueError as err:
        raise BundleError(f"cannot read {directory / MANIFEST_FILE} as JSON ({err}); the bundle is damaged") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{directory / MANIFEST_FILE} is not a JSON object; the bundle is damaged")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{directory / MANIFEST_FILE}: format_version is {version!r}, not an integer; the manifest is damaged")
    if version > FORMAT_VERSION:
        from mlfactory.version import __version__

        raise BundleError(
            f"{directory / MANIFEST_FILE}: bundle format version {version} is newer than this mlfactory "
            f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade mlfactory to load it"
        )
    if not isinstance(manifest.get("files"), dict) or SPEC_FILE not in manifest["files"]:
        raise BundleError(f"{directory / MANIFEST_FILE} lists no {SPEC_FILE}; the manifest is damaged")
    return manifest


def _verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists and matches its sha256; no file is unlisted."""
    listed = manifest["files"]
    for name, expected in listed.items():
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{directory / MANIFEST_FILE} lists {name!r}, which is outside the bundle; the manifest is damaged")
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is listed in {MANIFEST_FILE} but missing; the bundle is incomplete")
        found = sha256_file(path)
        if found != expected:
            raise BundleError(
                f"{directory}: {name} does not match its checksum in {MANIFEST_FILE} (sha256 {found[:16]}..., "
                f"expected {str(expected)[:16]}...); the file was changed or damaged after the bundle was written. "
                "Use an intact copy of the bundle."
            )
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    present -= {MANIFEST_FILE, SIGNATURE_FILE}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(
            f"{directory} holds files that {MANIFEST_FILE} does not list: {unlisted}; the bundle was changed after "
            "it was written. Remove them or use an intact copy."
        )


def _check_versions(directory: Path, spec: dict[str, Any], classes: list[type]) -> None:
    """Every library the model's registered classes need is installed; warn (as scikit-learn does for
    pickles) when its version differs from the writer's. Only those libraries are imported, never a
    name read from the bundle."""
    from mlfactory.models.base import library_version

    needed = dict.fromkeys(library for c in classes for library in c.libraries())
    versions = spec.get("versions")
    written = versions.get("libraries") if isinstance(versions, dict) else None
    for library in needed:
        installed = library_version(library)
        recorded = written.get(library) if isinstance(written, dict) else None
        if installed is None:
            raise BundleError(f"{directory} holds a {library} model, but {library} is not installed; install "
                              f"{library}{'==' + str(recorded) if recorded else ''}")
        if recorded is not None and installed.split("+")[0] != str(recorded).split("+")[0]:
            warnings.warn(
                f"{directory} was written with {library} {recorded}; {installed} is installed. Predictions may differ.",
                stacklevel=3,
            )


def _model_entry(directory: Path, entry: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    """(name, class_path, hparams) of a model entry of bundle.json, checked for shape."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("hparams"), dict):
        raise BundleError(f"{directory / SPEC_FILE}: {where} needs a 'name' and a mapping of 'hparams'; the bundle is damaged")
    return entry["name"], str(entry.get("class_path", "")), entry["hparams"]


def registered_class(name: str, class_path: str, where: str = "the bundle") -> type:
    """The class registered in this process under ``name``, if it is the class ``class_path`` says.

    A bundle names its model; it never chooses what code runs: nothing is imported from ``class_path``,
    which only has to agree with the registry (the built-in catalogue or a class that ran ``@register``).
    """
    from mlfactory.registry import get_spec, model_class

    try:
        spec = get_spec(name)
    except RegistryError:
        raise BundleError(
            f"{where} names model {name!r} ({class_path}), which is not registered in this mlfactory; a bundle loads "
            f"only registered models (`mlfactory models` lists them; a class of your own must run "
            f"@register(name={name!r}, ...) before loading)"
        ) from None
    if class_path != spec.class_path:
        raise BundleError(
            f"{where} says model {name!r} is {class_path}, but {name!r} is registered here as {spec.class_path}; "
            "refused: the bundle may only name the registered class"
        )
    return model_class(name)


def _registered_classes(directory: Path, spec: dict[str, Any]) -> list[type]:
    """The registered classes of the model and (for ensembles) its members, before any model file is read."""
    model = spec.get("model")
    name, class_path, _ = _model_entry(directory, model, "model")
    classes = [registered_class(name, class_path, f"{directory / SPEC_FILE}")]
    if "members" in model:
        members = model.get("members")
        if not isinstance(members, list) or not members:
            raise BundleError(f"{directory / SPEC_FILE}: an ensemble needs its list of members; the bundle is damaged")
        for i, member in enumerate(members):
            name, class_path, _ = _model_entry(directory, member, f"member {i}")
            classes.append(registered_class(name, class_path, f"{directory / SPEC_FILE} (member {i})"))
    return classes


def _load_module(directory: Path, spec: dict[str, Any], classes: list[type], device: str) -> Any:
    """The registered model built from its hyper-parameters, reading its own files (``load_native``)."""
    from mlfactory.models.base import NativeFileError

    model = spec["model"]
    module = _construct(classes[0], model["hparams"], directory / SPEC_FILE)
    try:
        module.load_native(directory / MODEL_DIR)
    except NativeFileError as err:
        raise BundleError(
            f"{err}; it is damaged or not what it claims. Use an intact copy of the bundle, and require signed bundles "
            "(--require-signature) from sources you do not control"
        ) from None
    except MLFactoryError as err:
        raise BundleError(f"{directory / MODEL_DIR}: cannot rebuild {model['name']!r} from its files ({_one_line(err)}); "
                          "the bundle is damaged or was written by another version of the model") from None
    return module.to(device).eval()


def _construct(cls: type, hparams: dict[str, Any], source: Path) -> Any:
    """``cls(**hparams)``, with a bundle error naming ``source`` when the arguments do not fit the class."""
    try:
        return cls(**hparams)
    except (TypeError, ValueError, MLFactoryError) as err:
        raise BundleError(
            f"{source}: the hyper-parameters do not fit {cls.registry_name} ({_one_line(err)}); the bundle is damaged "
            "or was written by another version of the model"
        ) from None


def check_device(device: str) -> str:
    """``device`` if it is a torch device this machine has; otherwise a one-line error naming those it has.

    Raises:
        ConfigError: not a device name, or a device this machine does not have.
    """
    import torch

    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        available.append("mps")
    choices = f"choose one of: {', '.join(available)}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {device!r} is not a torch device; {choices}") from None
    if str(parsed) in available or (parsed.type == "cpu"):
        return device
    if parsed.type in ("cuda", "mps") and parsed.type not in available:
        raise ConfigError(f"device {device!r} is not available: this machine has no {parsed.type.upper()} device that "
                          f"torch {torch.__version__} can use; {choices}")
    raise ConfigError(f"device {device!r} is not available on this machine; {choices}")


# --- small helpers ---------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"cannot read {path} as JSON ({err}); the bundle is damaged") from None
    if not isinstance(payload, dict):
        raise BundleError(f"{path} is not a JSON object; the bundle is damaged")
    return payload


def _write_json(path: Path, payload: Any) -> None:
    try:
        text = json.dumps(payload, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise BundleError(
            f"cannot write the bundle's {path.name}: {err}. Hyper-parameters must be plain JSON values "
            "(numbers, strings, lists, mappings) for a bundle to rebuild the model."
        ) from None
    path.write_text(text + "\n")


def _one_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, shortened: native libraries' messages span many lines."""
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
