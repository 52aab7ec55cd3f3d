"""What the trainer commands print: real runs captured as a user sees them, one-line usage errors, help, recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlfactory.cli import main
from mlfactory.cli.lightning_cli import RECIPES, find_recipe, model_before_its_options
from mlfactory.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# what Lightning and its libraries print by default, and a user of mlfactory does not need
NOISE = ("GPU available", "TPU available", "litlogger", "Trainable params", "MetricCollection", "LeafSpec",
         "`max_epochs` was not set", "log_every_n_steps", "Seed set to", "dirpath has changed", "v_num")


def mlfactory(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The console script as a user runs it: its own process, output piped (no terminal), outside the clone."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from mlfactory.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def captured_fit(sample_dir, tmp_path_factory):
    """A small lstm fit, run as a user runs it from a directory outside the clone: ``(cwd, run, output)``."""
    cwd = tmp_path_factory.mktemp("console")
    fit = mlfactory(cwd, "fit", "--model", "lstm", "--model.hidden_size", "4", "--model.num_layers", "1",
                    "--data.seq_len", "8", "--trainer.max_epochs", "1", "--data.data_dir", str(sample_dir))
    assert fit.returncode == 0, fit.stderr
    (run,) = (cwd / "lightning_logs" / "lstm").iterdir()
    return cwd, run, fit


def test_a_fit_prints_what_trains_progress_the_result_and_where(captured_fit, sample_dir):
    cwd, run, fit = captured_fit
    output = fit.stdout + fit.stderr
    assert not [noise for noise in NOISE if noise in output], output[-3000:]
    lines = fit.stderr.replace("\r", "\n").splitlines()
    run_name = f"lightning_logs/lstm/{run.name}"
    parameters = sum(p.numel() for p in __import__("torch").load(
        run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"].values())
    announced = f"fit lstm ({parameters:,} parameters, up to 1 epoch) on {sample_dir}, horizon 5, seq_len 8 -> {run_name}"
    assert announced in lines, lines[:3]
    assert any(line.startswith("val balanced accuracy") and "chance is 0.333" in line for line in lines)
    assert lines[-1] == f"run: {run_name}"
    # the epoch bar with the model's samples/s, and no cursor escapes where stdout is no terminal (a notebook)
    assert "Epoch 0" in fit.stdout and "samples/s" in fit.stdout and "\x1b[A" not in fit.stdout


def test_training_defaults_apply_outside_the_clone(captured_fit):
    _, run, _ = captured_fit
    config = (run / "config.yaml").read_text()
    assert "log_every_n_steps: 10" in config  # mlfactory/recipes/training.yaml (Lightning: 50)


def test_an_evaluation_goes_into_the_run_it_evaluates(captured_fit, capfd, monkeypatch):
    cwd, run, _ = captured_fit
    monkeypatch.chdir(cwd)
    relative = Path("lightning_logs") / "lstm" / run.name
    assert main(["test", "--ckpt_path", str(relative / "checkpoints" / "best.ckpt")]) == 0
    assert [p.name for p in (cwd / "lightning_logs" / "lstm").iterdir()] == [run.name]  # no run beside the fit
    (evaluation,) = (run / "evaluations").iterdir()
    assert evaluation.name.startswith("test-")
    assert json.loads((evaluation / "status.json").read_text())["status"] == "complete"
    fitted = json.loads((run / "metrics" / "evaluation_metrics.json").read_text())["test"]
    tested = json.loads((evaluation / "metrics" / "evaluation_metrics.json").read_text())["test"]
    assert tested["balanced_accuracy"] == pytest.approx(fitted["balanced_accuracy"])
    assert capfd.readouterr().err.splitlines()[-1] == f"run: {relative}/evaluations/{evaluation.name}"


def test_verbose_brings_lightnings_lines_back(captured_fit, tmp_path, caplog):
    _, run, _ = captured_fit
    ckpt = run / "checkpoints" / "best.ckpt"
    args = ["validate", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 0
    assert "GPU available" not in caplog.text and "Seed set to" not in caplog.text
    assert main([*args, "--verbose"]) == 0  # in-process, Lightning's lines go to logging (pytest's handler)
    assert "GPU available" in caplog.text and "Seed set to 42" in caplog.text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "lstm", "--model.hiden_size", "8"],
         "lstm has no option --model.hiden_size; did you mean --model.hidden_size?"),
        (["--model", "lstm", "--trainer.max_epoks", "3"],
         "unknown option --trainer.max_epoks; did you mean --trainer.max_epochs"),
        (["--model", "lstm", "--datas.horizon", "3"], "unknown option --datas.horizon; did you mean --data.horizon?"),
        (["--model", "lstm", "--model.lr_scheduler", "step"],
         "lstm: --model.lr_scheduler: expected one of 'plateau', 'cosine', 'none', got 'step'"),
        (["--model", "lstm", "--data.horizon", "five"], "--data.horizon: expected int, got 'five'"),
        (["--model.hidden_size", "8"], "--model.hidden_size comes before any model is chosen: pass --model NAME"),
        (["--model.hidden_size", "8", "--config", "lstm"], "put it after the --config that names the model"),
        ([], "no model chosen: pass --model NAME (one of: "),
    ],
)
def test_usage_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlfactory: error: ") and message in err, err


def test_an_evaluation_without_a_checkpoint_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "mlfactory: error: test needs a trained run's checkpoint: --ckpt_path RUN/checkpoints/best.ckpt\n"


def test_model_options_may_come_before_the_model(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.hidden_size", "8", "--model", "lstm", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: mlfactory.models.neural.lstm.LSTMModel" in printed and "hidden_size: 8" in printed


def test_a_config_between_model_options_and_the_model_keeps_the_order():
    args = ["fit", "--model.hidden_size", "8", "--config", "x.yaml", "--model", "lstm"]
    assert model_before_its_options(args) == args
    assert model_before_its_options(["fit", "--model.a", "1", "--model", "m", "--model.b", "2"]) == [
        "fit", "--model", "m", "--model.a", "1", "--model.b", "2"]


def test_fit_help_starts_with_models_data_recipes_and_resume(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    first_screen = "\n".join(out.splitlines()[:25])
    for needed in ("--model NAME", "xgboost", "lstm", "voting", "--data.data_dir", "--config NAME|FILE", "--resume",
                   "--verbose"):
        assert needed in first_screen, needed
    assert "Base of every model" not in out and "--trainer.max_epochs" in out


@pytest.mark.parametrize("command, group", [("cv", "--cv.scheme"), ("tune", "--tune.n_trials")])
def test_cv_and_tune_help_name_their_own_command(capsys, command, group):
    # they parse fit's options plus a group of their own; their help must not read as `mlfactory fit`
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mlfactory {command} ") and "Train a model on" not in out
    assert group in out and "--model NAME" in out and "--resume" not in out  # only fit resumes a run
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--resume", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"mlfactory: error: unknown option --resume; `mlfactory {command} --help` lists every option"


def test_recipes_are_found_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert find_recipe("lstm") == find_recipe("lstm.yaml") == RECIPES / "lstm.yaml"
    assert find_recipe("configs/lstm.yaml") == RECIPES / "lstm.yaml"  # a clone's path, typed outside it
    own = tmp_path / "configs" / "lstm.yaml"
    own.parent.mkdir()
    own.write_text("model: xgboost\n")
    assert find_recipe("configs/lstm.yaml") == Path("configs/lstm.yaml")  # a file on disk wins
    with pytest.raises(ConfigError, match="not a packaged recipe.*lstm, multires"):
        find_recipe("lstmm")
    with pytest.raises(SystemExit):
        main(["fit", "--config", "lstm", "--print_config"])
    printed = capsys.readouterr().out
    assert "LSTMModel" in printed and "hidden_size: 64" in printed and "gradient_clip_val: 1.0" in printed


def test_the_recipes_ship_with_the_package():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"recipes/*.yaml", "recipes/**/*.yaml"' in pyproject
    assert (RECIPES / "training.yaml").is_file() and (REPO / "configs" / "lstm.yaml").resolve() == RECIPES / "lstm.yaml"
