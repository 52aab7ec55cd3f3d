"""The run record of a plain Trainer: the CLI's layout, TensorBoard's HPARAMS tab, timed and budgeted
permutation importance with a bar, and figures (equity curve, reliability counts) whose titles name the run."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlfactory import FactoryDataModule, RunRecord, create_model
from mlfactory.errors import ConfigError
from mlfactory.evaluation import plots
from mlfactory.evaluation.importance import MIN_SAMPLES, feature_importance
from mlfactory.evaluation.report import equity_curve
from mlfactory.evaluation.trading import trading_report

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


@pytest.fixture(scope="module")
def plain_run(sample_dir, tmp_path_factory):
    """The README's notebook path: ``Trainer(callbacks=[RunRecord()])``, Lightning's own logger and progress bar.

    ``logistic`` has no importance of its own, so the record computes permutation importance.
    Returns ``(trainer, model, datamodule, root, stderr, titles)``; ``titles`` are the titles of every
    figure the record drew.
    """
    import lightning as L

    root = tmp_path_factory.mktemp("plain")
    titles: list[str] = []
    draw = plots.render

    def render_and_note_title(fig):
        titles.append(" | ".join(ax.get_title() for ax in fig.axes if ax.get_title()))
        return draw(fig)

    L.seed_everything(0)
    model = create_model("logistic")
    datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=5)
    trainer = L.Trainer(default_root_dir=str(root), max_epochs=3, enable_model_summary=False,
                        callbacks=[RunRecord()])
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        patch.setattr(plots, "render", render_and_note_title)
        trainer.fit(model, datamodule=datamodule)
    return trainer, model, datamodule, root, stderr.getvalue(), titles


def _read(run: Path, name: str) -> dict:
    return json.loads((run / "metrics" / name).read_text())


def test_a_plain_trainer_writes_the_cli_layout_and_test_joins_the_run(plain_run):
    trainer, model, datamodule, root, _, _ = plain_run
    run = Path(trainer.log_dir)
    assert run.parent == root / "lightning_logs" / "logistic" and RUN_ID.fullmatch(run.name)
    assert (run / "status.json").is_file() and (run / "hparams.yaml").is_file()
    assert not list((root / "lightning_logs").glob("version_*"))  # the default logger's folder is gone
    fitted = json.loads((run / "status.json").read_text())
    trainer.test(model, datamodule=datamodule)
    assert Path(trainer.log_dir) == run  # the same trainer evaluates into the run it trained
    assert json.loads((run / "status.json").read_text()) == fitted  # still the completed fit
    assert [p.name for p in (root / "lightning_logs" / "logistic").iterdir()] == [run.name]
    assert set(_read(run, "evaluation_metrics.json")) == {"val", "test"}


def test_a_logger_the_user_chose_is_left_alone(sample_dir, make_trainer, tmp_path):
    trainer = make_trainer(max_epochs=1, name="mine")
    trainer.fit(create_model("logistic"), datamodule=FactoryDataModule(data_dir=str(sample_dir), horizon=5))
    assert Path(trainer.log_dir) == tmp_path / "lightning_logs" / "mine" / "version_0"


def test_hparams_tab_holds_the_val_metrics_and_only_meaningful_settings(plain_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trainer, _, _, _, _, _ = plain_run
    run = Path(trainer.log_dir)
    events = EventAccumulator(str(run))
    events.Reload()
    assert "hp_metric" not in events.Tags()["scalars"]
    content = {
        tag.split("/")[-1]: plugin_data_pb2.HParamsPluginData.FromString(raw)
        for tag, raw in events.PluginTagToContent("hparams").items()
    }
    metric_tags = {info.name.tag for info in content["experiment"].experiment.metric_infos}
    val = _read(run, "evaluation_metrics.json")["val"]
    expected = {
        "hparams/val_balanced_accuracy": val["balanced_accuracy"],
        "hparams/val_log_loss": val["log_loss"],
        "hparams/val_ece": val["calibration"]["expected_calibration_error"],
        "hparams/val_sharpe": val["trading"]["sharpe_annualised"],
        "hparams/val_ic_mean": val["trading"]["ic_mean"],
    }
    assert set(expected) <= metric_tags
    for tag, value in expected.items():
        assert events.Scalars(tag)[-1].value == pytest.approx(value, rel=1e-6)
    settings = dict(content["session_start_info"].session_start_info.hparams)
    assert settings["model"].string_value == "logistic"
    assert settings["data.horizon"].number_value == 5
    assert any(key.startswith("model.") for key in settings)
    assert not [key for key in settings if key.startswith("_") or "._" in key or "instantiator" in key]
    assert not {"data.data_dir", "data.num_workers", "data.threads", "data.seq_len"} & set(settings)


def test_permutation_importance_shows_a_bar_and_is_timed_apart_from_training(plain_run):
    trainer, _, datamodule, _, stderr, _ = plain_run
    run = Path(trainer.log_dir)
    training = _read(run, "training_metrics.json")
    importance = training["importance"]
    n_features = datamodule.container.n_features
    assert importance["method"].startswith("permutation") and 0 < importance["samples"] <= 2000
    assert training["importance_seconds"] == pytest.approx(importance["seconds"], abs=1e-3)
    assert training["importance_seconds"] > 0
    status = json.loads((run / "status.json").read_text())
    assert training["train_seconds"] + training["importance_seconds"] <= status["seconds"]
    assert f"permutation importance ({importance['samples']} val samples)" in stderr
    assert f"{n_features}/{n_features}" in stderr
    assert "logistic fit" in stderr  # the estimator's own one-step bar, not Lightning's "Epoch 0 ... 1/20"
    assert "Epoch 0" not in stderr
    # a one-call fit has no rounds: nothing to report as a best iteration or an early stop
    assert training["best_iteration"] is None and training["fit_summary"] == {} and training["early_stopped"] is False


def test_a_time_budget_cuts_the_importance_samples_never_below_the_floor(plain_run):
    _, model, datamodule, _, _, _ = plain_run
    unlimited = feature_importance(model, datamodule, max_samples=600)
    assert unlimited["samples"] == 600
    tight = feature_importance(model, datamodule, max_samples=600, seconds=1e-4)
    assert tight["samples"] == MIN_SAMPLES
    assert len(tight["importance"]) == datamodule.container.n_features
    assert feature_importance(model, datamodule, max_samples=600, seconds=3600.0)["samples"] == 600


def test_importance_budget_is_reachable_as_arguments_and_checked():
    record = RunRecord(importance_samples=0, importance_share=None)
    assert record.importance_samples == 0 and record.importance_share is None
    with pytest.raises(ConfigError, match="importance_samples=-1 must be a whole number >= 0"):
        RunRecord(importance_samples=-1)
    with pytest.raises(ConfigError, match="importance_share=0 must be a positive share"):
        RunRecord(importance_share=0)


def test_figures_include_importance_and_equity_and_every_title_names_the_run(plain_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _, _, _, _, titles = plain_run
    run = Path(trainer.log_dir)
    figures = {"confusion_val", "confusion_test", "reliability_val", "reliability_test", "equity_val",
               "equity_test", "feature_importance"}
    assert {p.stem for p in (run / "plots").glob("*.png")} == figures
    events = EventAccumulator(str(run))
    events.Reload()
    assert figures <= set(events.Tags()["images"])
    assert len(titles) == len(figures)
    label = f"logistic · run {run.name} · horizon 5"
    assert all(label in title for title in titles), titles


def test_the_equity_curve_is_the_one_the_trading_metrics_are_computed_on(plain_run):
    trainer, _, datamodule, _, _, _ = plain_run
    run = Path(trainer.log_dir)
    split = datamodule.container.split("test")
    with np.load(run / "predictions" / "test_predictions.npz") as saved:
        probs, rows = saved["probabilities"], saved["row"]
    curve = equity_curve(probs, split.fwd_returns[rows], split.timestamps[rows], horizon=5)
    report = trading_report(probs, split.fwd_returns[rows], split.timestamps[rows], horizon=5)
    assert len(curve) == report["sharpe_periods"]
    assert curve["drawdown"].max() == pytest.approx(report["max_drawdown"])
    assert _read(run, "evaluation_metrics.json")["test"]["trading"]["max_drawdown"] == pytest.approx(
        report["max_drawdown"])
    assert curve.index.is_monotonic_increasing


def test_the_reliability_diagram_shows_the_samples_in_each_bin():
    report = {"expected_calibration_error": 0.05, "bin_confidence": [np.nan] * 3 + [0.35, 0.45, 0.55] + [np.nan] * 4,
              "bin_accuracy": [np.nan] * 3 + [0.3, 0.5, 0.6] + [np.nan] * 4, "bin_count": [0, 0, 0, 7, 120, 31, 0, 0, 0, 0]}
    fig = plots.reliability_figure(report, "val reliability\nlogistic · run x · horizon 5")
    counts_axis = fig.axes[1]
    heights = [patch.get_height() for patch in counts_axis.patches]
    assert heights == report["bin_count"]
    assert {"7", "120", "31"} <= {text.get_text() for text in counts_axis.texts}
    assert fig.axes[0].get_title().startswith("val reliability, ECE=0.050\n")
    plots.render(fig)
