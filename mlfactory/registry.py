"""The model registry: registry name -> model class, family and input kind.

Two things read it. The command line wants the list of models quickly (``mlfactory models`` must not
import torch or Lightning), so the built-in catalogue is read from the ``@register(...)`` decorators
in ``mlfactory/models/`` with :mod:`ast`, without importing them. Training wants the class, which is
imported on demand. Models registered at run time (a notebook, a plugin) join the catalogue when their
``@register`` runs.

>>> spec = get_spec("xgboost")
>>> (spec.family, spec.input_kind)
('boosting', 'tabular')
"""

from __future__ import annotations

import ast
import difflib
import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar

from mlfactory.errors import RegistryError

if TYPE_CHECKING:  # the base imports torch and Lightning; the registry must not
    from mlfactory.models.base import FactoryModule

Family = Literal["boosting", "classical", "neural", "ensemble"]
InputKind = Literal["tabular", "sequence", "multires", "any"]
FAMILIES: tuple[str, ...] = ("boosting", "classical", "neural", "ensemble")
# "any": decided per instance (an ensemble takes the view its members need)
INPUT_KINDS: tuple[str, ...] = ("tabular", "sequence", "multires", "any")

_MODELS_DIR = Path(__file__).parent / "models"
_runtime: dict[str, "ModelSpec"] = {}
_runtime_classes: dict[str, type] = {}  # classes registered at run time may not be importable by path

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model, without importing it."""

    name: str
    family: str
    input_kind: str
    class_path: str
    description: str

    def load(self) -> type:
        """Import and return the model class."""
        registered = _runtime_classes.get(self.class_path)
        if registered is not None:
            return registered
        module_name, _, class_name = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module_name), class_name)


def register(*, name: str, family: Family, input_kind: InputKind) -> Callable[[T], T]:
    """Class decorator that registers a ``LightningModule`` under a short ``name``.

    The decorator sets ``registry_name``, ``family`` and ``input_kind`` on the class; the data module
    reads ``input_kind`` to choose the view of the data the model receives.
    """
    if family not in FAMILIES:
        raise RegistryError(f"model {name!r}: family {family!r} is not one of {FAMILIES}")
    if input_kind not in INPUT_KINDS:
        raise RegistryError(f"model {name!r}: input_kind {input_kind!r} is not one of {INPUT_KINDS}")

    def decorate(cls: T) -> T:
        class_path = f"{cls.__module__}.{cls.__qualname__}"
        known = _catalogue().get(name) or _runtime.get(name)
        if known is not None and known.class_path != class_path:
            raise RegistryError(
                f"model name {name!r} is already registered to {known.class_path}; "
                f"choose another name for {class_path}"
            )
        cls.registry_name = name
        cls.family = family
        cls.input_kind = input_kind
        _runtime_classes[class_path] = cls
        _runtime[name] = ModelSpec(name, family, input_kind, class_path, _first_line(cls.__doc__))
        _document_create_model()
        return cls

    return decorate


def list_models() -> list[ModelSpec]:
    """Every registered model, sorted by family then name."""
    specs = {**_catalogue(), **_runtime}
    return sorted(specs.values(), key=lambda s: (FAMILIES.index(s.family), s.name))


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; the error lists the known names and the closest match."""
    spec = _runtime.get(name) or _catalogue().get(name)
    if spec is None:
        known = sorted({**_catalogue(), **_runtime})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(known)} "
            "(`mlfactory models` describes them)."
        )
    return spec


def model_class(name: str) -> type:
    """Import and return the class registered as ``name``."""
    return get_spec(name).load()


def create_model(name: str, **kwargs: Any) -> FactoryModule:
    return model_class(name)(**kwargs)


_CREATE_MODEL_DOC = """Instantiate the registered model ``name`` with keyword hyper-parameters.

    ``create_model("lstm", hidden_size=32)`` is ``LSTMModel(hidden_size=32)``: a ``FactoryModule``
    (a ``LightningModule``) ready for ``Trainer.fit(model, FactoryDataModule(...))``.

    Args:
        name: a registered model name (below, or ``mlfactory models`` / :func:`list_models`).
        **kwargs: the model's hyper-parameters; each model's are the arguments of its class.

    A model's arguments, with their defaults and meaning:

    - command line: ``mlfactory fit --model.help NAME`` (e.g. ``mlfactory fit --model.help lstm``);
    - Python: ``help(model_class(NAME))`` or ``inspect.signature(model_class(NAME))``
      (``from mlfactory.registry import model_class``).

    Raises:
        RegistryError: ``name`` is not registered (the message suggests the closest name).

    Registered models (family, input kind):
{models}
    """


def _describe_models() -> str:
    """The registered models, one indented line each, for :func:`create_model`'s docstring."""
    try:
        specs = list_models()
    except (RegistryError, OSError, SyntaxError) as err:  # a broken model file must not break the import
        return f"        (cannot list them here: {err}; run ``mlfactory models``)"
    return "\n".join(f"        {s.name:<14} {s.family}, {s.input_kind}: {s.description}" for s in specs)


def _document_create_model() -> None:
    create_model.__doc__ = _CREATE_MODEL_DOC.format(models=_describe_models())


def class_path_for(name_or_path: str) -> str:
    """Registry name -> full class path; a dotted class path is returned unchanged."""
    if "." in name_or_path:
        return name_or_path
    return get_spec(name_or_path).class_path


def registry_name_of(class_path: str) -> str | None:
    """The registry name of a class path, or None when the class is not registered."""
    for spec in list_models():
        if spec.class_path == class_path:
            return spec.name
    return None


@cache
def _catalogue() -> dict[str, ModelSpec]:
    """Read every ``@register(...)`` in mlfactory/models/ without importing the modules."""
    specs: dict[str, ModelSpec] = {}
    package_root = _MODELS_DIR.parent.parent
    for path in sorted(_MODELS_DIR.rglob("*.py")):
        module = ".".join(path.relative_to(package_root).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                fields = _register_fields(decorator)
                if fields is None:
                    continue
                spec = ModelSpec(
                    name=fields["name"],
                    family=fields["family"],
                    input_kind=fields["input_kind"],
                    class_path=f"{module}.{node.name}",
                    description=_first_line(ast.get_docstring(node)),
                )
                if spec.name in specs:
                    raise RegistryError(
                        f"model name {spec.name!r} is registered twice: "
                        f"{specs[spec.name].class_path} and {spec.class_path}"
                    )
                specs[spec.name] = spec
    return specs


def _register_fields(decorator: ast.expr) -> dict[str, str] | None:
    if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register"):
        return None
    fields = {kw.arg: kw.value.value for kw in decorator.keywords if isinstance(kw.value, ast.Constant)}
    if not {"name", "family", "input_kind"} <= fields.keys():
        return None
    return fields


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


_document_create_model()
