"""The command line end to end, in process: every artifact of a run, and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.cli.lightning_cli import RECIPES
from mlfactory.data.container import split_file

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(tmp_path: Path, *args: str) -> Path:
    assert main(["fit", *args, "--trainer.default_root_dir", str(tmp_path), *QUIET]) == 0
    return latest_run(tmp_path)


def latest_run(root: Path) -> Path:
    runs = sorted((root / "lightning_logs").glob("*/*"), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def scalars(report: dict) -> dict:
    """The top-level numbers of a split's evaluation (accuracy, log loss, ...)."""
    return {k: v for k, v in report.items() if isinstance(v, (int, float))}


def assert_complete_fit_record(run: Path, sample_dir: Path, name: str, seq_len: int | None) -> None:
    assert run.parent.name == name
    assert read_json(run / "status.json")["status"] == "complete"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file()
    training = read_json(run / "metrics" / "training_metrics.json")
    assert training["monitor"] == "val_loss" and training["best_checkpoint"] == "checkpoints/best.ckpt"
    assert training["history"] and "val_loss" in training["history"][-1]
    evaluation = read_json(run / "metrics" / "evaluation_metrics.json")
    for split in ("val", "test"):
        scores = evaluation[split]
        assert {"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "n_samples"} <= scores.keys()
        assert set(scores["per_class"]) == {"down", "neutral", "up"}
        assert sum(map(sum, scores["confusion_matrix"])) == scores["n_samples"]
        assert 0 <= scores["calibration"]["expected_calibration_error"] <= 1
        assert {"hit_rate", "sharpe_annualised", "max_drawdown", "ic_mean", "icir"} <= scores["trading"].keys()
        for plot in (f"confusion_{split}.png", f"reliability_{split}.png"):
            assert (run / "plots" / plot).stat().st_size > 1000
        frame = pd.read_parquet(sample_dir / split_file(split))
        expected_rows = len(frame) - (0 if seq_len is None else 3 * (seq_len - 1))
        with np.load(run / "predictions" / f"{split}_predictions.npz") as predictions:
            probs = predictions["probabilities"]
            assert probs.shape == (expected_rows, 3) == (scores["n_samples"], 3)
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
            np.testing.assert_array_equal(predictions["predicted_class"], probs.argmax(axis=1))
            rows = predictions["row"]
            np.testing.assert_array_equal(predictions["label"], frame["label_h5"].to_numpy()[rows] + 1)
            np.testing.assert_array_equal(
                predictions["datetime"], frame["datetime"].dt.tz_localize(None).to_numpy()[rows]
            )
            np.testing.assert_array_equal(predictions["symbol"], frame["symbol"].to_numpy()[rows].astype(str))
            assert json.loads(str(predictions["class_mapping"]))["2"] == {"label": 1, "name": "up"}
    importance = pd.read_csv(run / "importance" / "feature_importance.csv")
    assert len(importance) == read_json(run / "config" / "training_config.json")["data_fingerprint"]["n_features"]
    model_config = read_json(run / "config" / "model_config.json")
    assert model_config["name"] == name and model_config["init_args"]
    training_config = read_json(run / "config" / "training_config.json")
    assert training_config["data"]["data_dir"] == str(sample_dir)
    assert training_config["data_fingerprint"]["horizon"] == 5


@pytest.fixture(scope="module")
def xgboost_run(sample_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-xgb")
    return fit(root, "--model", "xgboost", "--model.n_estimators", "30", "--data.data_dir", str(sample_dir))


def test_fit_xgboost_writes_the_whole_record(xgboost_run, sample_dir):
    assert_complete_fit_record(xgboost_run, sample_dir, "xgboost", seq_len=None)
    assert (xgboost_run / "checkpoints" / "best_model" / "model.ubj").is_file()
    importance = pd.read_csv(xgboost_run / "importance" / "feature_importance.csv")
    assert set(importance["method"]) == {"gain"} and importance["importance"].max() > 0
    training = read_json(xgboost_run / "metrics" / "training_metrics.json")
    assert len(training["rounds"]["val"]["mlogloss"]) <= 30


def test_fit_lstm_from_the_recipe(sample_dir, tmp_path):
    run = fit(
        tmp_path, "--config", "lstm", "--data.data_dir", str(sample_dir),
        "--model.hidden_size", "8", "--model.num_layers", "1", "--data.seq_len", "12", "--trainer.max_epochs", "2",
    )
    assert_complete_fit_record(run, sample_dir, "lstm", seq_len=12)
    assert {"weights.pt", "hparams.json"} <= {p.name for p in (run / "checkpoints" / "best_model").iterdir()}
    assert read_json(run / "config" / "model_config.json")["init_args"]["hidden_size"] == 8


def test_fit_multires_from_the_recipe_and_test_its_checkpoint(sample_dir, tmp_path):
    run = fit(
        tmp_path / "fit", "--config", "multires", "--data.data_dir", str(sample_dir),
        "--model.encoder", "gru", "--model.hidden_size", "8", "--data.timeframes", "[5min,1h]", "--data.span", "2h",
        "--trainer.max_epochs", "1",
    )
    assert read_json(run / "status.json")["status"] == "complete"
    assert read_json(run / "config" / "model_config.json")["init_args"]["lookbacks"] == {"5min": 24, "1h": 2}
    assert (run / "bundle" / "manifest.json").is_file()  # a bundle that reads raw bars (docs/inference.md)
    assert not (run / "importance").exists()  # no feature columns to rank
    fitted = read_json(run / "metrics" / "evaluation_metrics.json")["test"]
    assert fitted["n_samples"] == len(pd.read_parquet(sample_dir / split_file("test")))  # bars.parquet: every row
    # the checkpoint brings back the model and the data's timeframes: the same test scores
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["test", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path / "test"), *QUIET]) == 0
    assert scalars(read_json(latest_run(tmp_path / "test") / "metrics" / "evaluation_metrics.json")["test"]) == (
        pytest.approx(scalars(fitted)))


@pytest.mark.parametrize("command, split", [("validate", "val"), ("test", "test")])
def test_evaluate_from_a_checkpoint_without_naming_the_model(xgboost_run, tmp_path, command, split):
    ckpt = xgboost_run / "checkpoints" / "best.ckpt"
    assert main([command, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path), *QUIET]) == 0
    run = latest_run(tmp_path)
    assert read_json(run / "status.json")["status"] == "complete"
    scores = read_json(run / "metrics" / "evaluation_metrics.json")[split]
    fitted = read_json(xgboost_run / "metrics" / "evaluation_metrics.json")[split]
    assert scalars(scores) == pytest.approx(scalars(fitted))
    assert scores["confusion_matrix"] == fitted["confusion_matrix"]
    with np.load(run / "predictions" / f"{split}_predictions.npz") as new, np.load(
        xgboost_run / "predictions" / f"{split}_predictions.npz"
    ) as old:
        np.testing.assert_array_equal(new["probabilities"], old["probabilities"])


def test_predict_from_a_checkpoint_writes_predictions(xgboost_run, tmp_path):
    ckpt = xgboost_run / "checkpoints" / "best.ckpt"
    args = ["predict", "--ckpt_path", str(ckpt), "--data.predict_split", "val"]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path), *QUIET]) == 0
    run = latest_run(tmp_path)
    with np.load(run / "predictions" / "predict_val_predictions.npz") as predictions, np.load(
        xgboost_run / "predictions" / "val_predictions.npz"
    ) as fitted:
        np.testing.assert_array_equal(predictions["probabilities"], fitted["probabilities"])
        np.testing.assert_array_equal(predictions["row"], fitted["row"])
    assert read_json(run / "status.json")["status"] == "complete"


def test_fit_on_the_embedded_default_data(tmp_path, isolated_cache, capsys):
    run = fit(tmp_path, "--model", "xgboost", "--model.n_estimators", "20")
    assert read_json(run / "status.json")["status"] == "complete"
    data_dir = read_json(run / "config" / "training_config.json")["data_fingerprint"]["data_dir"]
    assert Path(data_dir).is_relative_to(isolated_cache)
    assert f"run: {run}" in capsys.readouterr().err


def test_short_model_name_in_a_recipe(sample_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: xgboost\ndata:\n  horizon: 20\n")
    run = fit(tmp_path, "--config", str(recipe), "--data.data_dir", str(sample_dir), "--model.n_estimators", "5")
    assert run.parent.name == "xgboost"
    assert read_json(run / "config" / "training_config.json")["data"]["horizon"] == 20


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_parses(recipe, capsys):
    args = ["fit", "--config", str(RECIPES / recipe)]
    if recipe == "training.yaml":
        args += ["--model", "xgboost"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: mlfactory.models." in printed


def test_unknown_model_suggests_the_closest(capsys):
    assert main(["fit", "--model", "xgbost"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "unknown model 'xgbost'" in err and "Did you mean 'xgboost'?" in err


def test_bad_data_fails_with_one_line_and_marks_the_run_failed(tmp_path, capsys):
    code = main(["fit", "--model", "xgboost", "--data.data_dir", str(tmp_path / "missing"),
                 "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mlfactory: error: data directory") and "missing" in err[-1]
    status = read_json(latest_run(tmp_path) / "status.json")
    assert status["status"] == "failed" and "DataError" in status["error"]


def test_estimators_refuse_multi_process_strategies_before_launch(tmp_path, capsys):
    code = main(["fit", "--model", "xgboost", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                 "--trainer.devices", "2", "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert code == 1
    assert "cannot run under DDPStrategy with 2 processes" in capsys.readouterr().err


def test_typo_in_a_model_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "lstm", "--model.hiden_size", "8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean --model.hidden_size?" in err, err  # tests/test_console.py: more


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["test", "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 1
    err = capsys.readouterr().err
    assert "nope.ckpt does not exist" in err and "checkpoints/best.ckpt" in err


def test_models_and_help_do_not_import_torch():
    code = (
        "import sys\nfrom mlfactory.cli import main\n"
        "assert main(['models']) == 0 and main(['--help']) == 0\n"
        "heavy = [m for m in ('torch', 'lightning', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "xgboost" in result.stdout and "lstm" in result.stdout


def test_model_help_accepts_the_short_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "lstm"])
    assert exit_info.value.code in (0, None)
    assert "--model.hidden_size HIDDEN_SIZE" in capsys.readouterr().out


def test_mixed_voting_members_on_the_command_line(sample_dir, tmp_path):
    run = fit(
        tmp_path, "--model", "voting", "--model.members",
        "[{name: xgboost, n_estimators: 10}, {name: lstm, hidden_size: 4, num_layers: 1}]",
        "--model.neural_max_epochs", "1", "--data.data_dir", str(sample_dir), "--data.seq_len", "8",
    )
    assert read_json(run / "status.json")["status"] == "complete"
    members = sorted(p.name for p in (run / "checkpoints" / "best_model" / "members").iterdir())
    assert members == ["0_xgboost", "1_lstm"]
    # the checkpoint restores the ensemble with its members, without naming them again
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["test", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path / "t"), *QUIET]) == 0
    tested = read_json(latest_run(tmp_path / "t") / "metrics" / "evaluation_metrics.json")["test"]
    assert scalars(tested) == pytest.approx(scalars(read_json(run / "metrics" / "evaluation_metrics.json")["test"]))


# --- checkpoints are input from outside: only registered model classes are imported ------------------
def tampered(ckpt: Path, target: Path, edit) -> Path:
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


TAMPERING = {
    "identity": (lambda c: c["mlfactory"].update(class_path="os.system"), "names model class 'os.system'"),
    "lightning_class_path": (lambda c: c["hyper_parameters"].update(_class_path="subprocess.Popen"),
                             "names model class 'subprocess.Popen'"),
    "nested_member": (lambda c: c["hyper_parameters"].update(members=[{"class_path": "os.system",
                                                                      "init_args": {"command": "touch pwned"}}]),
                      "names class 'os.system'"),
    "reserved_key": (lambda c: c["hyper_parameters"].update(class_path="os.system"), "names class 'os.system'"),
    "data_key": (lambda c: c["datamodule_hyper_parameters"].update({"x.class_path": "os.system"}),
                 "setting named 'x.class_path'"),
}


@pytest.mark.parametrize(
    "how, command",
    # fit passes no data settings from the checkpoint, so only the model's classes matter there
    [(how, command) for how in sorted(TAMPERING) for command in ("fit", "validate", "test", "predict")
     if (how, command) != ("data_key", "fit")],
)
def test_a_tampered_checkpoint_naming_another_class_is_refused(how, command, xgboost_run, tmp_path, capsys):
    edit, message = TAMPERING[how]
    ckpt = tampered(xgboost_run / "checkpoints" / "best.ckpt", tmp_path / "tampered.ckpt", edit)
    model = ["--model", "xgboost"] if command == "fit" else []
    code = main([command, *model, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path), *QUIET])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "lightning_logs").exists() and not Path("pwned").exists()


def test_a_checkpoint_of_a_class_registered_in_process_is_accepted(monkeypatch):
    from mlfactory import registry
    from mlfactory.models.boosting.xgboost import XGBoostModel
    from mlfactory.registry import register

    # registered for this test only
    monkeypatch.setattr(registry, "_runtime", dict(registry._runtime))
    monkeypatch.setattr(registry, "_runtime_classes", dict(registry._runtime_classes))

    @register(name="my_xgboost", family="boosting", input_kind="tabular")
    class MyXGBoost(XGBoostModel):
        """XGBoost registered by a notebook."""

    class_path = f"{MyXGBoost.__module__}.{MyXGBoost.__qualname__}"
    from mlfactory.cli.lightning_cli import _check_checkpoint_classes

    _check_checkpoint_classes("x.ckpt", {"mlfactory": {"class_path": class_path}, "hyper_parameters": {}})


# --- epochs: estimators fit once; no model trains for 0 or fewer than -1 epochs --------------------------
@pytest.mark.parametrize(
    "model, max_epochs, message",
    [
        (["--model", "xgboost"], "-1", "is fitted once by its library, so --trainer.max_epochs -1 does not apply"),
        (["--model", "random_forest"], "0", "--trainer.max_epochs 0 trains nothing"),
        (["--model", "lstm"], "0", "--trainer.max_epochs 0 trains nothing"),
        (["--model", "lstm"], "-2", "--trainer.max_epochs -2 trains nothing"),
    ],
)
def test_max_epochs_that_cannot_train_are_refused_in_one_line(model, max_epochs, message, sample_dir, tmp_path, capsys):
    code = main(["fit", *model, "--trainer.max_epochs", max_epochs, "--data.data_dir", str(sample_dir),
                 "--trainer.default_root_dir", str(tmp_path), *QUIET])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines()[-1].startswith("mlfactory: error:") and message in err, err
    assert not list(tmp_path.glob("lightning_logs/*/*/status.json"))  # refused before the run started


def test_an_estimator_under_a_plain_trainer_refuses_zero_epochs(sample_dir, make_trainer):
    from mlfactory import FactoryDataModule, create_model
    from mlfactory.errors import ModelError

    trainer = make_trainer(max_epochs=0)
    with pytest.raises(ModelError, match="fitted once by its library, so max_epochs=0"):
        trainer.fit(create_model("xgboost", n_estimators=5), datamodule=FactoryDataModule(data_dir=str(sample_dir)))


def test_threads_of_zero_is_a_one_line_error(tmp_path, capsys):
    code = main(["fit", "--model", "xgboost", "--data.threads", "0", "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mlfactory: error: FactoryDataModule: threads=0 is not a positive whole number")


def test_threads_from_the_command_line_reach_torch_pyarrow_and_the_run_config(sample_dir, tmp_path):
    import pyarrow
    import torch

    previous, previous_arrow = torch.get_num_threads(), pyarrow.cpu_count()
    torch.set_num_threads(3)
    pyarrow.set_cpu_count(3)
    try:
        run = fit(tmp_path, "--model", "xgboost", "--model.n_estimators", "3", "--data.data_dir", str(sample_dir),
                  "--data.threads", "1")
        assert torch.get_num_threads() == 1 and pyarrow.cpu_count() == 1  # the split reader's threads too
    finally:
        torch.set_num_threads(previous)
        pyarrow.set_cpu_count(previous_arrow)
    assert "threads: 1" in (run / "config.yaml").read_text()


def test_run_record_options_on_the_command_line(sample_dir, tmp_path):
    # --record.* configures the one RunRecord of the run: importance off leaves no importance/
    run = fit(tmp_path, "--model", "logistic", "--data.data_dir", str(sample_dir), "--record.importance_samples", "0")
    assert (run / "status.json").exists() and not (run / "importance").exists()
    assert read_json(run / "status.json")["status"] == "complete"
    assert read_json(run / "config" / "training_config.json")  # the record was written once, complete
