"""Search spaces: every registered model's default samples and fits; bad spaces fail in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfactory.registry import list_models, model_class
from mlfactory.tuning import TuneError
from mlfactory.tuning.space import SEARCH_DIR, SearchSpace

MODELS = [spec.name for spec in list_models()]
# what keeps a fit tiny for each family; the searched parameters come from the space
TINY = {"boosting": {"n_estimators": 5}, "random_forest": {"n_estimators": 5}, "svm": {"max_iter": 5}}
MEMBERS = {"members": ["logistic", "logistic"], "neural_max_epochs": 1}


def test_every_registered_model_has_a_default_space_within_its_constraints() -> None:
    assert sorted(p.stem for p in SEARCH_DIR.glob("*.yaml")) == sorted(MODELS)
    for name in MODELS:
        SearchSpace.default_for(name).check(model_class(name))


@pytest.mark.parametrize("name", MODELS)
def test_default_space_samples_and_fits_one_tiny_trial(name: str, sample_dir: Path) -> None:
    import lightning as L
    import optuna

    from mlfactory import FactoryDataModule, create_model

    spec = next(s for s in list_models() if s.name == name)
    space = SearchSpace.default_for(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = space.sample(trial)
    assert set(params) == set(space.names) and set(trial.params) == set(params)
    extra = {**TINY.get(spec.family, {}), **TINY.get(name, {}), **(MEMBERS if spec.family == "ensemble" else {})}
    L.seed_everything(0, verbose=False)
    model = create_model(name, **params, **extra)
    datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=5, seq_len=16, batch_size=64, threads=1)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.state.finished and {k: model.hparams[k] for k in params} == params


def _space(tmp_path: Path, text: str) -> SearchSpace:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return SearchSpace.from_file(path)


@pytest.mark.parametrize("text, model, words", [
    ("num_leafs: {low: 8, high: 64}", "lightgbm", "num_leafs is not a parameter lightgbm searches"),
    ("num_leaves: {low: 64, high: 8}", "lightgbm", "the range [64, 8] is empty"),
    ("voting: {choices: []}", "voting", "choices is empty"),
    ("learning_rate: {low: 0.0, high: 0.3, log: true}", "lightgbm", "a log range needs low > 0"),
    ("subsample: {low: 0.5, high: 1.5}", "lightgbm", "1.5 is outside lightgbm's own range [1e-06, 1.0]"),
    ("lr_scheduler: {choices: [plateau, linear]}", "lstm", "choice 'linear' is not valid for lstm"),
    ("num_leaves: {low: 8.5, high: 64.0}", "lightgbm", "takes int here, not an float range"),
    ("n_jobs: {low: 1, high: 4}", "lightgbm", "n_jobs is not a parameter lightgbm searches"),
    ("num_leaves: {low: 8, high: 64, step: 0.5}", "lightgbm", "an int range needs a whole step, not 0.5"),
    ("num_leaves: {low: 8, high: 64, step: true}", "lightgbm", "step must be a positive number, not True"),
    ("learning_rate: {low: 0.01, high: 0.3, log: 'false'}", "lightgbm", "log must be true or false, not 'false'"),
])
def test_bad_space_names_file_parameter_and_fix(tmp_path: Path, text: str, model: str, words: str) -> None:
    with pytest.raises(TuneError) as caught:
        _space(tmp_path, text).check(model_class(model))
    message = str(caught.value)
    assert words in message and str(tmp_path / "space.yaml") in message and "\n" not in message
