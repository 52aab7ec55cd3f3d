"""The base of the ensembles: members by registry name, each fed its own view of the same samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlfactory.errors import EnsembleCompatibilityError
from mlfactory.models.base import FactoryModule, read_native
from mlfactory.models.ensemble.members import (
    MemberSpec,
    build_member,
    fit_member,
    member_input,
    member_state,
    predict_rows,
    restore_member,
)
from mlfactory.models.estimator import FitOnceModule


DEFAULT_MEMBERS: list[MemberSpec] = [
    {"name": "xgboost", "n_estimators": 200},
    {"name": "lightgbm", "n_estimators": 200},
    {"name": "catboost", "n_estimators": 200},
]
"""The members of ``--model voting`` (stacking, blending) without ``--model.members``: the three boosting
libraries, each at most 200 rounds (early-stopped on val), so the bare command trains in about the time
of one default booster."""


def copy_members(members: Any) -> Any:
    """A member list of its own (a shared default must not be changed through one ensemble's hparams)."""
    if not isinstance(members, (list, tuple)):
        return members  # refused with a clear message by the constructor
    return [dict(spec) if isinstance(spec, dict) else spec for spec in members]


class EnsembleModule(FitOnceModule):
    """Members given by registry name (with their own parameters), fitted once like any estimator.

    Mixed families work: when any member reads windows, the ensemble is served windows of the data
    module's ``seq_len`` and every tabular member reads the window's last row. The ensemble is then
    defined on the rows that all members cover, i.e. rows with ``seq_len - 1`` earlier rows of the
    same symbol; with tabular members only, on every row.

    Subclasses implement :meth:`fit_members` (fit ``members_`` and whatever combines them) and
    :meth:`combine` (member probabilities -> ensemble probabilities).
    """

    library = "mlfactory"
    native_suffix = "json"

    @classmethod
    def libraries(cls) -> tuple[str, ...]:
        return ("torch",)  # each member's own library is known from its class

    def __init__(self, members: list[MemberSpec], neural_max_epochs: int, neural_patience: int) -> None:
        super().__init__()
        if not members:
            raise EnsembleCompatibilityError(
                f"{type(self).__name__} needs at least one member, e.g. --model.members '[xgboost, lightgbm]'"
            )
        # build once now, so a bad member fails before any data is read
        prototypes = [build_member(spec, i) for i, spec in enumerate(members)]
        self.input_kind = "sequence" if any(m.input_view().windowed for m in prototypes) else "tabular"
        self.members_: list[Any] = []

    # --- what a subclass provides --------------------------------------------------------------
    def fit_members(self, datamodule: Any, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
        raise NotImplementedError

    def combine(self, member_probs: list[np.ndarray]) -> np.ndarray:
        """Ensemble probabilities (n, 3) from each member's (n, 3) probabilities."""
        raise NotImplementedError

    def combiner_state(self) -> dict[str, Any]:
        """What the checkpoint keeps of the combiner besides the members (JSON-able or tensors)."""
        return {}

    def restore_combiner(self, state: dict[str, Any]) -> None:
        """Restore :meth:`combiner_state`."""

    # --- shared machinery ----------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return bool(self.members_)

    def required_libraries(self) -> tuple[str, ...]:
        """torch, and each member's own library."""
        return ("torch",) + tuple(library for m in self.members_ for library in m.required_libraries())

    def fitted_members(self) -> list[FactoryModule]:
        return list(self.members_)

    def new_members(self) -> list[Any]:
        return [build_member(spec, i) for i, spec in enumerate(self.hparams.members)]

    def fit_on(self, datamodule: Any) -> None:
        view = self.input_view(datamodule.seq_len)
        train_rows, val_rows = (datamodule.sample_rows(s, view) for s in ("train", "val"))
        self.fit_members(datamodule, train_rows, val_rows)
        train = datamodule.container.split("train")
        probs = self.predict_rows(train, train_rows, datamodule.seq_len, datamodule.eval_batch_size)
        self.log_train_metrics(probs, train.labels[train_rows], train.weights[train_rows])

    def fit_member(self, member: Any, datamodule: Any, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
        """Fit one member on the given rows with an ordinary Trainer, on this ensemble's device."""
        hp = self.hparams
        fit_member(member, datamodule, train_rows, val_rows, hp.neural_max_epochs, hp.neural_patience, self._trainer)

    def member_rows_proba(self, members: list[Any], split: Any, rows: np.ndarray, seq_len: int, batch_size: int) -> list[np.ndarray]:
        return [predict_rows(m, split, rows, seq_len, batch_size) for m in members]

    def predict_rows(self, split: Any, rows: np.ndarray, seq_len: int, batch_size: int) -> np.ndarray:
        return self.combine(self.member_rows_proba(self.members_, split, rows, seq_len, batch_size))

    def predict_proba_array(self, x: np.ndarray) -> np.ndarray:
        """The combined (n, 3) float32 probabilities of the members, each reading its own view of ``x``."""
        self._require(self.is_fitted, "is not fitted; train it or load a checkpoint first")
        member_probs = []
        for member in self.members_:
            member.eval()
            member_probs.append(member.predict_proba_array(member_input(member, x)))
        return np.asarray(self.combine(member_probs), dtype=np.float32)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # identity only: no single estimator
        # each member in its own format (estimators' native bytes, networks' state dicts), and the combiner
        checkpoint["ensemble"] = {
            "members": [member_state(m) for m in self.members_],
            "combiner": self.combiner_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("ensemble")
        if stored and stored["members"]:
            self.members_ = [restore_member(state) for state in stored["members"]]
            self.restore_combiner(stored["combiner"])

    def export_native(self, directory: Path) -> None:
        """``members/<i>_<name>/`` in each member's own format, and ``ensemble.json`` for the combiner."""
        for i, member in enumerate(self.members_):
            member.export_native(directory / "members" / f"{i}_{member.registry_name}")
        directory.mkdir(parents=True, exist_ok=True)
        combiner = {k: np.asarray(v).tolist() for k, v in self.combiner_state().items()}
        manifest = {"members": [m.registry_name for m in self.members_], "combiner": combiner,
                    "input_kind": self.input_kind}
        (directory / "ensemble.json").write_text(json.dumps(manifest, indent=2))

    def load_native(self, directory: Path) -> "EnsembleModule":
        """Members rebuilt from this ensemble's member specs, each from its folder; then the combiner."""
        directory = Path(directory)
        members: list[FactoryModule] = []
        for i, member in enumerate(self.new_members()):
            members.append(member.load_native(directory / "members" / f"{i}_{member.registry_name}"))
        path = directory / "ensemble.json"
        combiner = read_native(path, "mlfactory", lambda: json.loads(path.read_text()).get("combiner", {}))
        self.members_ = members
        read_native(path, "mlfactory", lambda: self.restore_combiner(combiner))
        return self

class MetaLearnerEnsemble(EnsembleModule):
    """An ensemble whose combiner is a multinomial logistic regression on member log-probabilities."""

    coef_: np.ndarray | None = None
    intercept_: np.ndarray | None = None

    def fit_combiner(self, member_probs: list[np.ndarray], y: np.ndarray, w: np.ndarray) -> None:
        coef, intercept = fit_meta_learner(meta_features(member_probs), y, w, self.hparams.meta_C)
        # the same dtype and layout as after a reload, so reloaded predictions are bit-identical
        self.restore_combiner({"coef": coef.tolist(), "intercept": intercept.tolist()})

    def combine(self, member_probs: list[np.ndarray]) -> np.ndarray:
        return meta_proba(meta_features(member_probs), self.coef_, self.intercept_).astype(np.float32)

    def combiner_state(self) -> dict[str, Any]:
        return {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}

    def restore_combiner(self, state: dict[str, Any]) -> None:
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(state["intercept"], dtype=np.float64)


def meta_features(member_probs: list[np.ndarray]) -> np.ndarray:
    """Log-probabilities of every member side by side: the meta-learner's input."""
    return np.log(np.clip(np.concatenate(member_probs, axis=1), 1e-6, 1.0))


def fit_meta_learner(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression on member log-probabilities; returns (coef, intercept)."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    if len(present) < 3:
        raise EnsembleCompatibilityError(
            f"the meta-learner's rows hold only classes {present.tolist()}; it needs all three (down, neutral, up). "
            "Use more data or a longer split."
        )
    meta = LogisticRegression(C=C, max_iter=1000)
    meta.fit(X, y, sample_weight=w)
    return meta.coef_, meta.intercept_


def meta_proba(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    logits = X @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)
