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


# the arguments a base owns once, with their defaults (behaviour unchanged from when every model repeated them)
SHARED = {
    "neural": {"n_features": None, "learning_rate": 1e-3, "weight_decay": 1e-4, "optimizer": "adamw",
               "lr_scheduler": "plateau"},
    "boosting": {"n_estimators": 500, "learning_rate": 0.05, "early_stopping_rounds": 50, "n_jobs": None,
                 "random_state": 0},
}
SHARING = [spec.name for spec in list_models() if spec.family in SHARED]


def own_arguments(cls: type) -> set[str]:
    """The named arguments of the model class's own ``__init__`` (not its base's)."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD}


@pytest.mark.parametrize("name", SHARING)
def test_shared_arguments_are_owned_by_the_base_and_saved_with_the_model(name):
    spec = get_spec(name)
    shared = {k: v for k, v in SHARED[spec.family].items() if not (name == "multires" and k == "n_features")}
    assert not own_arguments(spec.load()) & shared.keys(), "the model repeats an argument its base owns"
    model = create_model(name, learning_rate=0.02)
    assert {k: model.hparams[k] for k in shared} == {**shared, "learning_rate": 0.02}
    assert model.hparams_initial == model.hparams


def test_multires_takes_no_n_features_and_catboost_keeps_its_own_l2_default():
    assert "n_features" not in create_model("multires").hparams
    assert create_model("catboost").hparams.reg_lambda == 3.0
    assert create_model("xgboost").hparams.reg_lambda == create_model("lightgbm").hparams.reg_lambda == 1.0


@pytest.mark.parametrize(
    ("name", "shown", "hidden"),
    [
        ("lstm", ["--model.hidden_size", "--model.n_features", "optimizer step size", "--model.lr_scheduler",
                  "halves the rate when"], []),
        ("multires", ["--model.lookbacks", "--model.weight_decay", "L2 penalty"], ["--model.n_features"]),
        ("xgboost", ["--model.min_child_weight", "--model.n_estimators", "maximum boosting rounds",
                     "--model.random_state"], []),
        ("catboost", ["--model.reg_lambda", "(``l2_leaf_reg``)", "default: 3.0", "--model.early_stopping_rounds"], []),
    ],
)
def test_model_help_lists_the_base_arguments_with_their_docs(name, shown, hidden, capsys):
    from mlfactory.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", name])
    assert exit_info.value.code in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert all(" ".join(s.split()) in text for s in shown), text
    assert not any(s in text for s in hidden)


def test_create_model_help_lists_every_registered_name_and_how_to_see_arguments():
    import inspect
    import pydoc

    text = pydoc.render_doc(create_model, renderer=pydoc.plaintext)
    for spec in list_models():
        assert f"{spec.name:<14} {spec.family}, {spec.input_kind}" in text
    assert "mlfactory fit --model.help NAME" in text and "help(model_class(NAME))" in text
    # the return type is the model base (named without importing torch at registry import)
    assert inspect.signature(create_model).return_annotation == "FactoryModule"
    import typing

    import mlfactory.models.base as base

    assert typing.get_type_hints(create_model, vars(base))["return"] is FactoryModule


def test_create_model_doc_names_models_registered_at_run_time():
    from mlfactory.models.classical.logistic import LogisticModel

    @register(name="doc_listed_logistic", family="classical", input_kind="tabular")
    class Listed(LogisticModel):
        """A logistic regression registered to check the docstring."""

    assert "doc_listed_logistic" in create_model.__doc__
