"""Search spaces: which init arguments of a model a study varies, and over what values.

A space is a YAML mapping from a model's init argument to its range (docs/tuning.md)::

    num_leaves: {low: 8, high: 256, log: true}     # an int range (both bounds are ints)
    learning_rate: {low: 0.01, high: 0.3, log: true}  # a float range
    subsample: {low: 0.5, high: 1.0, step: 0.1}
    lr_scheduler: {choices: [plateau, cosine]}     # a choice

Every registered model ships a default in ``mlfactory/recipes/search/<model>.yaml``; ``--tune.space FILE``
replaces it. :meth:`SearchSpace.check` holds the space against the model before the first trial: every
name must be one of the model's init arguments, every range non-empty and inside the model's own
``param_ranges``, every choice one of a ``Literal``'s choices.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from mlfactory.tuning import TuneError

SEARCH_DIR = Path(__file__).resolve().parent.parent / "recipes" / "search"
# init arguments a study never varies: they say where and how fast to run, not what to learn
NOT_SEARCHABLE = frozenset({"n_features", "n_jobs", "kwargs", "members"})
Choice = bool | int | float | str | None


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched init argument: a numeric range (``low``..``high``) or a list of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Choice, ...] | None = None

    def sample(self, trial: Any) -> Any:
        """The value of this parameter in an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        """``[low, high]`` (with log/step) or ``{a, b}``, as the summary and errors print it."""
        if self.choices is not None:
            return "{" + ", ".join(repr(c) for c in self.choices) + "}"
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"[{self.low}, {self.high}]{extra}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The searched parameters of one model, read from ``source`` (a file)."""

    params: tuple[Param, ...]
    source: str

    @classmethod
    def default_for(cls, model_name: str) -> "SearchSpace":
        """The shipped default space of a registered model."""
        path = SEARCH_DIR / f"{model_name}.yaml"
        if not path.is_file():
            raise TuneError(f"model {model_name!r} has no default search space ({path} is missing); pass "
                            "--tune.space FILE with the ranges to search (docs/tuning.md)")
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | Path) -> "SearchSpace":
        """A space from a YAML file; a malformed entry names the file and the parameter."""
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise TuneError(f"search space {path} does not exist; pass --tune.space with a YAML file") from None
        except (OSError, yaml.YAMLError) as err:
            raise TuneError(f"search space {path} is not readable YAML ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
        return cls.from_mapping(loaded, str(path))

    @classmethod
    def from_mapping(cls, mapping: Any, source: str) -> "SearchSpace":
        """A space from ``{name: {low, high, log, step} | {choices: [...]}}``."""
        if isinstance(mapping, dict) and isinstance(mapping.get("params"), dict):
            mapping = mapping["params"]
        if not isinstance(mapping, dict) or not mapping:
            raise TuneError(f"search space {source} must map parameter names to ranges, e.g. "
                            "`learning_rate: {low: 0.01, high: 0.3, log: true}`")
        return cls(tuple(_param(str(name), spec, source) for name, spec in mapping.items()), source)

    @property
    def names(self) -> tuple[str, ...]:
        """The searched parameter names, in file order."""
        return tuple(p.name for p in self.params)

    def sample(self, trial: Any) -> dict[str, Any]:
        """One value per parameter from an Optuna ``trial``."""
        return {p.name: p.sample(trial) for p in self.params}

    def check(self, model_class: type) -> None:
        """Refuse a parameter the model does not take, or a range outside the model's own constraints."""
        hints = model_class._init_hints()
        model = getattr(model_class, "registry_name", "") or model_class.__name__
        for param in self.params:
            where = f"search space {self.source}: {param.name}"
            if param.name not in hints or param.name in NOT_SEARCHABLE or param.name == "return":
                known = sorted(n for n in hints if n not in NOT_SEARCHABLE and n != "return")
                raise TuneError(f"{where} is not a parameter {model} searches; it takes {', '.join(known)}")
            _check_against_model(param, hints[param.name], model_class.param_ranges.get(param.name), model, where)


def _param(name: str, spec: Any, source: str) -> Param:
    where = f"search space {source}: {name}"
    if not isinstance(spec, dict):
        raise TuneError(f"{where} must be a mapping: {{low: L, high: H}} or {{choices: [...]}}, not {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices", "type"}
    if unknown:
        raise TuneError(f"{where} has unknown key(s) {sorted(unknown)}; use low, high, log, step, type or choices")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise TuneError(f"{where}: choices is empty; list at least one value")
        if any(not isinstance(c, (bool, int, float, str, type(None))) for c in choices):
            raise TuneError(f"{where}: choices must be plain values (numbers, strings, true/false, null)")
        return Param(name, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise TuneError(f"{where} needs both low and high (or choices)")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise TuneError(f"{where}: low and high must be numbers, not {low!r} and {high!r}")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise TuneError(f"{where}: type must be int or float, not {kind!r}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):  # bool("false") would be True
        raise TuneError(f"{where}: log must be true or false, not {log!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise TuneError(f"{where}: the range [{low}, {high}] is empty; low must not exceed high")
    if log and low <= 0:
        raise TuneError(f"{where}: a log range needs low > 0, not {low}")
    if log and step is not None:
        raise TuneError(f"{where}: a range is either log or stepped, not both")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0):
        raise TuneError(f"{where}: step must be a positive number, not {step!r}")
    integer = kind == "int"
    if integer and step is not None and not float(step).is_integer():
        raise TuneError(f"{where}: an int range needs a whole step, not {step!r}")
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise TuneError(f"{where}: an int range needs whole bounds, not [{low}, {high}]")
    return Param(name, low=low, high=high, log=log, step=step, integer=integer)


def _check_against_model(param: Param, hint: Any, bounds: tuple[float | None, float | None] | None, model: str,
                         where: str) -> None:
    """A range inside the model's ``param_ranges``, of the argument's type; choices among a Literal's."""
    literal = _literal_choices(hint)
    if param.choices is not None:
        for choice in param.choices:
            if literal is not None and choice in literal:
                continue
            if not _fits_type(choice, hint):
                allowed = f"one of {list(literal)}" if literal is not None else f"of type {_type_name(hint)}"
                raise TuneError(f"{where}: choice {choice!r} is not valid for {model}; it must be {allowed}")
            _check_bounds(choice, bounds, model, where)
        return
    if literal is not None and not any(isinstance(a, (int, float)) for a in _args(hint)):
        raise TuneError(f"{where}: {model} takes one of {list(literal)} here; search it with choices, not a range")
    probe = int(param.low) if param.integer else float(param.low)
    if not _fits_type(probe, hint):
        raise TuneError(f"{where}: {model} takes {_type_name(hint)} here, not an {'int' if param.integer else 'float'} "
                        "range")
    for value in (param.low, param.high):
        _check_bounds(value, bounds, model, where)


def _check_bounds(value: Any, bounds: tuple[float | None, float | None] | None, model: str, where: str) -> None:
    if bounds is None or value is None or isinstance(value, (str, bool)):
        return
    low, high = bounds
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise TuneError(f"{where}: {value!r} is outside {model}'s own range {allowed}; narrow the search range")


def _args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)


def _literal_choices(hint: Any) -> tuple[Any, ...] | None:
    values = [v for arg in _args(hint) if typing.get_origin(arg) is typing.Literal for v in typing.get_args(arg)]
    return tuple(values) if values else None


def _fits_type(value: Any, hint: Any) -> bool:
    for arg in _args(hint):
        if arg is Any:
            return True
        if arg is type(None) and value is None:
            return True
        if typing.get_origin(arg) is typing.Literal:
            if value in typing.get_args(arg):
                return True
            continue
        if arg is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if arg is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if arg in (bool, str) and isinstance(value, arg):
            return True
    return False


def _type_name(hint: Any) -> str:
    return " | ".join(getattr(a, "__name__", str(a)) for a in _args(hint))


_UnionType = type(int | None)
