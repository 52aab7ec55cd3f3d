"""The registry: the catalogue read without imports agrees with the classes, names resolve, errors help."""

from __future__ import annotations

import pytest

from mlfactory import create_model, list_models, register
from mlfactory.errors import RegistryError
from mlfactory.models.base import FactoryModule
from mlfactory.registry import class_path_for, get_spec, model_class, registry_name_of


def test_lists_the_built_in_models():
    specs = {spec.name: spec for spec in list_models()}
    assert {"xgboost", "lstm"} <= specs.keys()
    assert (specs["xgboost"].family, specs["xgboost"].input_kind) == ("boosting", "tabular")
    assert (specs["lstm"].family, specs["lstm"].input_kind) == ("neural", "sequence")
    assert all(spec.description for spec in specs.values())


def test_catalogue_read_without_imports_matches_the_classes():
    for spec in list_models():
        cls = spec.load()
        assert issubclass(cls, FactoryModule)
        assert (cls.registry_name, cls.family, cls.input_kind) == (spec.name, spec.family, spec.input_kind)
        assert cls.__doc__.strip().startswith(spec.description)


def test_create_model_passes_hyper_parameters():
    model = create_model("xgboost", max_depth=3)
    assert model.hparams.max_depth == 3 and model.registry_name == "xgboost"


def test_names_and_class_paths_resolve_both_ways():
    path = class_path_for("lstm")
    assert path == "mlfactory.models.neural.lstm.LSTMModel"
    assert class_path_for(path) == path
    assert registry_name_of(path) == "lstm"


def test_unknown_name_lists_models_and_suggests_one():
    with pytest.raises(RegistryError, match=r"unknown model 'lstn'\. Did you mean 'lstm'\?.*xgboost"):
        get_spec("lstn")
    with pytest.raises(RegistryError):
        model_class("nothing-like-it")


def test_runtime_registration_from_a_notebook():
    from mlfactory.models.neural.lstm import LSTMModel

    @register(name="tiny_lstm_for_test", family="neural", input_kind="sequence")
    class TinyLSTM(LSTMModel):
        """A smaller LSTM registered at run time."""

    assert get_spec("tiny_lstm_for_test").description == "A smaller LSTM registered at run time."
    assert "tiny_lstm_for_test" in {spec.name for spec in list_models()}
    assert isinstance(create_model("tiny_lstm_for_test", n_features=3), TinyLSTM)


def test_a_taken_name_is_refused():
    with pytest.raises(RegistryError, match="already registered"):

        @register(name="xgboost", family="boosting", input_kind="tabular")
        class Impostor(FactoryModule):
            """Not the real one."""


def test_bad_family_or_input_kind_is_refused():
    with pytest.raises(RegistryError, match="family 'trees'"):
        register(name="x", family="trees", input_kind="tabular")
    with pytest.raises(RegistryError, match="input_kind 'image'"):
        register(name="x", family="neural", input_kind="image")
