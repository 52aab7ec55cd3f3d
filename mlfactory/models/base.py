"""What every registered model shares: the input contract, metrics, evaluation and prediction steps."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, TypeVar

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from mlfactory.errors import ModelError
from mlfactory.metrics import classification_metrics

T = TypeVar("T")

Batch = dict[str, Any]
"""``{"x": tensor or {timeframe: tensor}, "y": classes, "w": weights, "row": split rows}`` (data/windows.py)."""


def predict_batches(module: L.LightningModule, loader: Iterable[Batch]) -> dict[str, torch.Tensor]:
    """``predict_step`` over a loader outside Lightning's loops: rows, probabilities and labels, on CPU.

    Used after fit (on the best model) and for permutation importance; the module's mode is restored.
    """
    was_training = module.training
    module.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    with torch.inference_mode():
        for batch in loader:
            batch = move_data_to_device(batch, module.device)  # x may be a dict of tensors (multires)
            outputs.append({k: v.detach().cpu() for k, v in module.predict_step(batch, 0).items()})
    module.train(was_training)
    return {k: torch.cat([o[k] for o in outputs]) for k in ("row", "probs", "y")}


def library_version(library: str) -> str | None:
    """The installed ``library``'s own ``__version__`` (its distribution name may differ, e.g. xgboost-cpu)."""
    try:
        return getattr(importlib.import_module(library), "__version__", None)
    except ImportError:
        return None


class NativeFileError(ModelError):
    """A model file written by :meth:`FactoryModule.export_native` that its library cannot parse."""


def read_native(path: Path, library: str, parse: Callable[[], T]) -> T:
    """``parse()``, which reads ``path`` with ``library``; any failure becomes one line naming the file.

    Native parsers raise what they like (BadZipFile, UnpicklingError, XGBoostError, ...).
    """
    try:
        return parse()
    except Exception as err:  # noqa: BLE001 - the boundary of the native parsers
        lines = str(err).strip().splitlines()
        first = lines[0].strip()[:200] if lines else type(err).__name__
        raise NativeFileError(
            f"{path}: cannot be read as the {library} model file it should be ({type(err).__name__}: {first})"
        ) from None


class FactoryModule(L.LightningModule):
    """Base of every model. Subclasses supply :meth:`loss_and_probs`; the rest is shared.

    ``registry_name``, ``family`` and ``input_kind`` are set by ``@register``. ``param_ranges`` maps a
    numeric hyper-parameter to its closed ``(low, high)`` range (``None`` = unbounded), checked in
    ``setup`` (before the optimizer or estimator is built) so the error names the parameter, the
    model, the range and the value; ``Literal`` choices in the signature are checked there too.

    The contract the rest of the code relies on, so that nothing outside ``mlfactory/models/`` asks
    what family a model is: :meth:`export_native` / :meth:`load_native`, :meth:`predict_proba_array`
    (numpy in, numpy out), :meth:`libraries` / :meth:`library_versions`, :meth:`input_view`, and the
    capability flags ``fits_once`` and ``supports_importance``.
    """

    registry_name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    input_kind: ClassVar[str] = "tabular"
    param_ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    library: ClassVar[str] = "torch"
    """The library whose format :meth:`export_native` writes (the bundle manifest's ``library``)."""
    fits_once: ClassVar[bool] = False
    """Fitted once by its library (no gradient steps): no best-epoch weights to reload, epochs,
    gradient clipping and multi-process strategies do not apply."""
    supports_importance: ClassVar[bool] = False
    """Reports its own per-feature importance through :meth:`native_importance`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "supports_importance" not in cls.__dict__:  # the flag follows the method unless a class sets it
            cls.supports_importance = cls.native_importance is not FactoryModule.native_importance

    def __init__(self) -> None:
        super().__init__()
        self.train_metrics = classification_metrics("train_")
        self.val_metrics = classification_metrics("val_")
        self.test_metrics = classification_metrics("test_")

    def loss_and_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample-weighted loss of a batch and its (batch, 3) class probabilities."""
        raise NotImplementedError

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """Class probabilities of a batch, shape (batch, 3)."""
        return self.loss_and_probs(batch)[1]

    def predict_proba_array(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) float32 class probabilities of model inputs ``x`` (the input view's shape), no labels needed.

        The numpy-level twin of :meth:`predict_proba`: bundles, ensembles and evaluation call it.
        """
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            batch = {
                "x": tensor,
                "y": torch.zeros(len(x), dtype=torch.long, device=self.device),
                "w": torch.ones(len(x), dtype=torch.float32, device=self.device),
            }
            return self.predict_proba(batch).float().cpu().numpy()

    def native_importance(self) -> np.ndarray | None:
        """Per-feature importance from the model itself (``supports_importance``), else None."""
        return None

    def export_native(self, directory: Path) -> None:
        """Write the model in its own library's format into ``directory`` (the run's best_model/)."""
        raise NotImplementedError

    def load_native(self, directory: Path) -> "FactoryModule":
        """Restore the fitted state from a folder :meth:`export_native` wrote; returns ``self``.

        Call it on a model built with the same hyper-parameters. A file its library cannot parse
        raises :class:`NativeFileError` naming the file.
        """
        raise NotImplementedError

    def fitted_members(self) -> list["FactoryModule"]:
        """The fitted models this one combines (an ensemble's members); none for a single model."""
        return []

    @classmethod
    def libraries(cls) -> tuple[str, ...]:
        """The libraries a fitted model of this class needs to predict (before any file is read)."""
        return (cls.library,)

    def required_libraries(self) -> tuple[str, ...]:
        """The libraries this fitted model needs (an ensemble adds its members')."""
        return type(self).libraries()

    def library_versions(self) -> dict[str, str | None]:
        """``{library: installed version}`` of :meth:`required_libraries`, as recorded in bundles."""
        return {library: library_version(library) for library in dict.fromkeys(self.required_libraries())}

    def data_seq_len(self) -> int | None:
        """The window length of the attached data module, which owns ``seq_len``; None without one."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(datamodule, "seq_len", None)

    def input_view(self, seq_len: int | None = None) -> Any:
        """The view of the data this model reads (:class:`mlfactory.data.views.InputView`)."""
        from mlfactory.data.views import InputView

        return InputView.of(self.input_kind, seq_len)

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"row": batch["row"], "probs": self.predict_proba(batch), "y": batch["y"]}

    def setup(self, stage: str) -> None:
        self.check_params()

    def check_params(self) -> None:
        """Refuse hyper-parameters outside ``param_ranges`` or outside the choices of a ``Literal`` hint."""
        for name, hint in self._init_hints().items():
            value = self.hparams.get(name)
            if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
                raise ModelError(
                    f"{type(self).__name__} ({self.registry_name}): {name}={value!r} is not one of "
                    f"{list(typing.get_args(hint))}"
                )
        for name, (low, high) in self.param_ranges.items():
            value = self.hparams.get(name)
            if value is None:
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise ModelError(
                    f"{type(self).__name__} ({self.registry_name}): {name}={value!r} is outside {bounds}; "
                    f"pass --model.{name} with a value in that range"
                )

    @classmethod
    def _init_hints(cls) -> dict[str, Any]:
        """Type hints of every ``__init__`` in the chain: a base may own shared arguments (``**kwargs``)."""
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if issubclass(klass, FactoryModule) and "__init__" in klass.__dict__:
                hints.update(typing.get_type_hints(klass.__dict__["__init__"]))
        return hints

    def log_metrics(self, stage: str, loss: torch.Tensor, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Log ``{stage}_loss`` and the stage's metric collection as epoch means."""
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs, target)
        batch_size = len(target)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=stage != "train")  # epoch values agree across DDP ranks; metrics sync themselves
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)

    def _evaluate(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        loss, probs = self.loss_and_probs(batch)
        self.log_metrics(stage, loss, probs, batch["y"])
        return {"loss": loss, "row": batch["row"], "probs": probs.detach(), "y": batch["y"]}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # which model wrote it, so `validate/test/predict --ckpt_path` need no --model
        from mlfactory.version import __version__

        module_type = type(self)
        checkpoint["mlfactory"] = {
            "model": self.registry_name,
            "class_path": f"{module_type.__module__}.{module_type.__qualname__}",
            "version": __version__,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """Init arguments as plain values, without Lightning's internal keys."""
        return {k: v for k, v in dict(self.hparams).items() if not k.startswith("_")}

    def _require(self, condition: bool, message: str) -> None:
        if not condition:
            raise ModelError(f"{type(self).__name__} ({self.registry_name}): {message}")
