"""Write a run's inference bundle and load it back: the best model with everything needed to predict.

A bundle is a directory (``<run>/bundle/``) that needs neither the training data nor the checkpoint:

```
bundle/
  manifest.json      format_version, sha256 of every other file, created, mlfactory and library versions
  bundle.json        model (registry name, class path, family, hyper-parameters), input (features in
                     order, input kind, seq_len, scaler), horizon, class mapping, training-data fingerprint
  model/             the model as the run's checkpoints/best_model/ holds it (``export_native``):
                     model.<suffix> (estimators), weights.pt + hparams.json (neural),
                     members/<i>_<name>/... + ensemble.json (ensembles)
```

Loading checks every checksum before anything is parsed, refuses a newer format version, and rebuilds
the model through its registry class (``from_native`` / ``load_state_dict`` / ``restore_member``), so
the bundle predicts through the same code as the trained model.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlfactory.data.container import METADATA_FILE, class_mapping
from mlfactory.errors import RunError

if TYPE_CHECKING:
    import pandas as pd

    from mlfactory.inference.predictor import Predictor

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "bundle.json"
MODEL_DIR = "model"
BUNDLE_DIR = "bundle"


class BundleError(RunError):
    """An inference bundle that is missing, damaged, changed after it was written, or too new to read."""


# --- writing ---------------------------------------------------------------------------------------
def write_bundle(module: Any, datamodule: Any, run_dir: str | Path) -> Path | None:
    """Write ``run_dir/bundle/`` for a fitted ``module`` trained on ``datamodule``; return its path.

    The directory is built beside its final place and renamed into it when complete, so a bundle is
    either whole or absent. A module that is neither an estimator, a neural network nor an ensemble of
    them cannot be rebuilt from a bundle, and a bundle cannot serve a multi-resolution model's raw-bar
    windows yet: those get none, with a warning.
    """
    kind = _model_kind(module)
    if kind is None:
        warnings.warn(f"{type(module).__name__} is not an EstimatorModule or NeuralModule; no inference bundle written")
        return None
    container = datamodule.container
    input_kind = getattr(module, "input_kind", "tabular")
    if input_kind not in ("tabular", "sequence"):
        # a bundle predicts from a table of features; multi-resolution models read raw bars instead
        warnings.warn(f"{type(module).__name__} reads {input_kind!r} input, which bundles cannot serve yet; no "
                      "inference bundle written (the checkpoint and best_model/ reload it)")
        return None

    target = Path(run_dir) / BUNDLE_DIR
    tmp = target.with_name(f".{BUNDLE_DIR}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        module.export_native(tmp / MODEL_DIR)
        spec = {
            "format_version": FORMAT_VERSION,
            "created": _now(),
            "model": _model_spec(module, kind),
            "input": _input_spec(container, input_kind, datamodule.seq_len),
            "horizon": int(container.horizon),
            "class_mapping": class_mapping(),
            "training_data": _fingerprint(container),
            "versions": _versions(module, kind),
        }
        _write_json(tmp / SPEC_FILE, spec)
        _write_manifest(tmp, spec)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _model_kind(module: Any) -> str | None:
    from mlfactory.models.ensemble.base import EnsembleModule
    from mlfactory.models.estimator import EstimatorModule
    from mlfactory.models.neural.base import NeuralModule

    if isinstance(module, EnsembleModule):
        return "ensemble"
    if isinstance(module, EstimatorModule):
        return "estimator"
    if isinstance(module, NeuralModule):
        return "neural"
    return None


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _model_spec(module: Any, kind: str) -> dict[str, Any]:
    spec = {
        "name": module.registry_name,
        "class_path": _class_path(module),
        "family": module.family,
        "kind": kind,
        "hparams": module.hyperparameters(),
    }
    if kind == "ensemble":
        # the combiner is in model/ensemble.json (export_native); members' own arguments are here
        spec["members"] = [
            {"name": m.registry_name, "class_path": _class_path(m), "hparams": m.hyperparameters()}
            for m in module.members_
        ]
    return spec


def _input_spec(container: Any, input_kind: str, seq_len: int) -> dict[str, Any]:
    features = list(container.feature_names)
    scaler = _scaler(container.metadata, features, container.data_dir)
    return {
        "kind": input_kind,
        "seq_len": int(seq_len) if input_kind == "sequence" else None,
        "features": features,
        "expects": "unscaled" if scaler is not None else "scaled",
        "scaler": scaler,
    }


def _scaler(metadata: dict | None, features: list[str], data_dir: Path | None) -> dict[str, Any] | None:
    """(x - center) / scale per feature from scaling_metadata.json, or None (the bundle expects scaled features)."""
    if metadata is None:
        return None
    center, scale = metadata.get("center"), metadata.get("scale")
    if not isinstance(center, dict) or not isinstance(scale, dict):
        warnings.warn(f"{data_dir}/{METADATA_FILE} has no per-feature 'center' and 'scale'; the bundle expects scaled features")
        return None
    missing = [f for f in features if f not in center or f not in scale]
    if missing:
        warnings.warn(
            f"{data_dir}/{METADATA_FILE} has no center/scale for features {missing}; the bundle expects scaled features"
        )
        return None
    return {
        "kind": metadata.get("scaler", "unknown"),
        "formula": "(x - center) / scale",
        "center": [float(center[f]) for f in features],
        "scale": [float(scale[f]) for f in features],
    }


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
        _sha256(metadata_path) if metadata_path is not None and metadata_path.is_file() else None
    )
    return fingerprint


def _versions(module: Any, kind: str) -> dict[str, Any]:
    from mlfactory import __version__
    from mlfactory.models.estimator import _version

    if kind == "estimator":
        libraries = [module.library]
    elif kind == "neural":
        libraries = ["torch"]
    else:
        libraries = ["torch"] + [getattr(m, "library", "") or "torch" for m in module.members_]
    return {
        "mlfactory": __version__,
        "python": platform.python_version(),
        "libraries": {lib: _version(lib) for lib in dict.fromkeys(libraries)},
    }


def _write_manifest(directory: Path, spec: dict[str, Any]) -> None:
    files = {
        path.relative_to(directory).as_posix(): _sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    libraries = spec["versions"]["libraries"]
    library = next(iter(libraries)) if spec["model"]["kind"] != "ensemble" else "mlfactory"
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
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


# --- loading ---------------------------------------------------------------------------------------
class ModelBundle:
    """A loaded, verified inference bundle.

    ``ModelBundle.load(path).predict(frame)`` takes a DataFrame of **unscaled** features (every column of
    :attr:`features`; for sequence models also ``datetime``, and ``symbol`` when there are several
    series) and returns one row per input row: ``datetime``, ``symbol``, ``p_down``, ``p_neutral``,
    ``p_up``, ``predicted_class``, ``predicted_label``, ``confidence`` and ``has_history``.

    Attributes:
        path: the bundle directory.
        spec: the parsed ``bundle.json``.
        manifest: the parsed ``manifest.json``.
        module: the rebuilt model (a ``FactoryModule`` in eval mode).
    """

    def __init__(self, path: Path, spec: dict[str, Any], manifest: dict[str, Any], module: Any, device: str) -> None:
        self.path = path
        self.spec = spec
        self.manifest = manifest
        self.module = module
        self.device = device
        scaler = spec["input"]["scaler"]
        self._center = np.asarray(scaler["center"], dtype=np.float64) if scaler else None
        self._scale = np.asarray(scaler["scale"], dtype=np.float64) if scaler else None

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
        return self._center is None

    @property
    def class_names(self) -> list[str]:
        mapping = self.spec["class_mapping"]
        return [mapping[str(i)]["name"] for i in range(len(mapping))]

    @property
    def class_labels(self) -> list[int]:
        mapping = self.spec["class_mapping"]
        return [int(mapping[str(i)]["label"]) for i in range(len(mapping))]

    def __repr__(self) -> str:
        window = f", seq_len={self.seq_len}" if self.input_kind == "sequence" else ""
        return f"ModelBundle({self.model_name!r}, {len(self.features)} features, {self.input_kind}{window}, path={str(self.path)!r})"

    # --- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "ModelBundle":
        """Verify and load the bundle at ``path`` (a run directory works too: its ``bundle/`` is used).

        Raises:
            BundleError: the directory or manifest is missing, the format version is newer than this
                mlfactory reads, a file is missing, unlisted or does not match its checksum, or the model
                class cannot be found.
        """
        directory = Path(path)
        if not (directory / MANIFEST_FILE).is_file() and (directory / BUNDLE_DIR / MANIFEST_FILE).is_file():
            directory = directory / BUNDLE_DIR
        manifest = _read_manifest(directory)
        _verify_files(directory, manifest)
        spec = _read_json(directory / SPEC_FILE)
        _check_versions(directory, spec)
        module = _load_module(directory, spec, device)
        return cls(directory, spec, manifest, module, device)

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
        return self.predictor(batch_size=batch_size)(frame)

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

        return feature_matrix(frame, self.features, self._center, self._scale, first_row)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) float32 probabilities of model inputs ``x``: (n, n_features) rows or (n, seq_len, n_features) windows."""
        if self.module.family in ("boosting", "classical"):
            # a single estimator: straight to its library, without a torch round trip or a loss
            return np.asarray(self.module.estimator_proba(x), dtype=np.float32)
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            batch = {
                "x": tensor,
                "y": torch.zeros(len(x), dtype=torch.long, device=self.device),
                "w": torch.ones(len(x), dtype=torch.float32, device=self.device),
            }
            return self.module.predict_proba(batch).float().cpu().numpy()


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise BundleError(f"bundle directory {directory} does not exist; pass a run's bundle/ folder (written by every fit)")
    if not (directory / MANIFEST_FILE).is_file():
        raise BundleError(
            f"{directory} has no {MANIFEST_FILE}, so it is not an inference bundle (or it is incomplete); "
            "pass a run's bundle/ folder"
        )
    manifest = _read_json(directory / MANIFEST_FILE)
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{directory / MANIFEST_FILE}: format_version is {version!r}, not an integer; the manifest is damaged")
    if version > FORMAT_VERSION:
        from mlfactory import __version__

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
        found = _sha256(path)
        if found != expected:
            raise BundleError(
                f"{directory}: {name} does not match its checksum in {MANIFEST_FILE} (sha256 {found[:16]}..., "
                f"expected {str(expected)[:16]}...); the file was changed or damaged after the bundle was written. "
                "Use an intact copy of the bundle."
            )
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(
            f"{directory} holds files that {MANIFEST_FILE} does not list: {unlisted}; the bundle was changed after "
            "it was written. Remove them or use an intact copy."
        )


def _check_versions(directory: Path, spec: dict[str, Any]) -> None:
    """Warn (as scikit-learn does for pickles) when the model's library version differs from the writer's."""
    from mlfactory.models.estimator import _version

    for library, written in spec["versions"]["libraries"].items():
        installed = _version(library)
        if installed is None:
            raise BundleError(f"{directory} holds a {library} model, but {library} is not installed; install {library}=={written}")
        if written is not None and installed.split("+")[0] != str(written).split("+")[0]:
            warnings.warn(
                f"{directory} was written with {library} {written}; {installed} is installed. Predictions may differ.",
                stacklevel=3,
            )


def _model_class(name: str, class_path: str) -> type:
    """The registered class, or the class path for models registered at run time elsewhere."""
    import importlib

    from mlfactory.errors import RegistryError
    from mlfactory.registry import model_class

    try:
        return model_class(name)
    except RegistryError:
        module_name, _, class_name = class_path.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            raise BundleError(
                f"the bundle's model {name!r} ({class_path}) is not registered in this mlfactory and cannot be "
                "imported; install the package that defines it"
            ) from None


def _load_module(directory: Path, spec: dict[str, Any], device: str) -> Any:
    model = spec["model"]
    module = _model_class(model["name"], model["class_path"])(**model["hparams"])
    files = directory / MODEL_DIR
    if model["kind"] == "estimator":
        module.on_load_checkpoint({"estimator": {"data": (files / f"model.{module.native_suffix}").read_bytes()}})
    elif model["kind"] == "neural":
        module.ensure_network()
        module.load_state_dict(_load_weights(files / "weights.pt"))
    elif model["kind"] == "ensemble":
        members = [
            _member_state(files / "members" / f"{i}_{m['name']}", m) for i, m in enumerate(model["members"])
        ]
        combiner = _read_json(files / "ensemble.json")["combiner"]
        module.on_load_checkpoint({"ensemble": {"members": members, "combiner": combiner}})
    else:
        raise BundleError(f"{directory / SPEC_FILE}: unknown model kind {model['kind']!r}")
    return module.to(device).eval()


def _member_state(directory: Path, member: dict[str, Any]) -> dict[str, Any]:
    """The state :func:`mlfactory.models.ensemble.members.restore_member` takes, from a member's files."""
    from mlfactory.models.estimator import EstimatorModule

    cls = _model_class(member["name"], member["class_path"])
    state = {"name": member["name"], "hparams": member["hparams"]}
    if issubclass(cls, EstimatorModule):
        state["native"] = (directory / f"model.{cls.native_suffix}").read_bytes()
    else:
        state["state_dict"] = _load_weights(directory / "weights.pt")
    return state


def _load_weights(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# --- small helpers ---------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"cannot read {path} as JSON ({err}); the bundle is damaged") from None


def _write_json(path: Path, payload: Any) -> None:
    try:
        text = json.dumps(payload, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise BundleError(
            f"cannot write the bundle's {path.name}: {err}. Hyper-parameters must be plain JSON values "
            "(numbers, strings, lists, mappings) for a bundle to rebuild the model."
        ) from None
    path.write_text(text + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
