"""Raw bars in, predictions out: the bundle carries prepare's recipe and reproduces the run's test predictions.

The contract (issue 18): from the raw bars a run was prepared from, ``predict_bars`` reproduces the run's
``test_predictions.npz`` for every test row (identical classes, probabilities within 1e-6), for an
estimator, a sequence model and an ensemble; and the same when only the needed history before the test
period is given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.data.synthetic import generate_bars
from mlfactory.errors import BundleError
from mlfactory.inference import ModelBundle
from mlfactory.prepare import PrepareError

SEQ_LEN = 8  # as in conftest.py
PROBS = ["p_down", "p_neutral", "p_up"]
N_BARS = 2500  # the sample_dir fixture's bars


@pytest.fixture(scope="module")
def raw_bars() -> pd.DataFrame:
    """The raw bars the session's sample split directory was prepared from."""
    return generate_bars(n_bars=N_BARS)


def assert_reproduces(out: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Every row of the run's test predictions is predicted, with its class and probabilities (1e-6)."""
    merged = reference.merge(out, on=["datetime", "symbol"], how="left", validate="one_to_one")
    assert merged["has_history"].fillna(False).astype(bool).all(), "a test row has no prediction from raw bars"
    probs = merged[PROBS].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(probs, merged[["p0", "p1", "p2"]].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(merged["predicted_class"].to_numpy(dtype=np.int64),
                                  merged[["p0", "p1", "p2"]].to_numpy().argmax(axis=1))


@pytest.mark.parametrize("name", ["xgboost", "lstm", "voting"])
def test_raw_bars_reproduce_the_runs_test_predictions(name, fitted_run, run_predictions, raw_bars):
    run = fitted_run(name)
    bundle = ModelBundle.load(run / "bundle")
    reference = run_predictions(run)

    # all the bars the run was prepared from
    out = bundle.predict_bars(raw_bars)
    assert len(out) == len(raw_bars)  # one prediction per bar (no gaps in the sample bars)
    assert_reproduces(out, reference)
    # no bar is predicted without the measured history before it
    position = out.groupby("symbol").cumcount().to_numpy()
    extra = SEQ_LEN - 1 if bundle.view.windowed else 0
    assert not out["has_history"].to_numpy()[position < bundle.required_history + extra].any()
    assert out.loc[~out["has_history"], PROBS].isna().all().all()

    # only the history the bundle asks for before the test period
    first_test = reference.groupby("symbol")["datetime"].min()
    times = pd.to_datetime(raw_bars["datetime"], utc=True).dt.tz_localize(None).to_numpy().view(np.int64)
    keep = np.zeros(len(raw_bars), dtype=bool)
    for symbol, start in first_test.items():
        rows = np.flatnonzero((raw_bars["symbol"] == symbol).to_numpy())
        first = rows[np.searchsorted(times[rows], start.value)]
        keep[first - bundle.required_history - extra : rows[-1] + 1] = True
    short = bundle.predict_bars(raw_bars[keep])
    assert_reproduces(short, reference)


def test_the_bundle_records_prepares_recipe_and_each_features_warm_up(fitted_run, sample_dir):
    spec = json.loads((fitted_run("xgboost") / "bundle" / "bundle.json").read_text())
    meta = json.loads((sample_dir / "scaling_metadata.json").read_text())
    recipe, warmup = spec["input"]["recipe"], spec["input"]["warmup"]
    assert recipe["timeframes"] == meta["timeframes"] and recipe["base_resolution"] == meta["base_resolution"]
    assert recipe["fill_gaps"] == meta["input"]["fill_gaps"] and recipe["talib_version"] == meta["talib_version"]
    assert recipe["labels"] == meta["labels"] and recipe["horizons"] == meta["horizons"]
    assert set(warmup["bars"]) == set(spec["input"]["features"]) and not warmup["unmeasured"]
    bars = warmup["bars"]
    # TA-Lib's exponential indicators need far more history than their lookback; plain windows need exactly it
    assert bars["ret_60_1min"] == 60 and bars["vol_20_1min"] == 20
    assert bars["ema_dist_50_1min"] > 200 and bars["rsi_14_1min"] > 100
    assert warmup["max_bars"] == max(bars.values())


def test_an_unmeasured_warm_up_is_told_once_where_raw_bars_are_predicted(fitted_run):
    # fitting stays quiet about it (the figure is in bundle.json); the user of raw bars hears it once
    import warnings

    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    measured = bundle.required_history
    bundle.spec["input"]["warmup"]["unmeasured"] = [bundle.features[0]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert bundle.required_history == bundle.required_history == measured
    assert len([w for w in caught if "could not be measured" in str(w.message)]) == 1


def test_the_measured_warm_up_is_needed_and_enough(fitted_run, raw_bars):
    """With the measured history the features equal prepare's to float32 precision; with much less they do not."""
    from mlfactory.prepare.recipe import _agree

    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    recipe = bundle.recipe
    one = raw_bars[raw_bars["symbol"] == "SYNB"].reset_index(drop=True)
    full = recipe.features(recipe.load(one), 0)
    typical = np.nanmedian(np.abs(full), axis=1)[:, None]
    names = recipe.feature_names
    j = names.index("ema_dist_50_1min")
    need = bundle.spec["input"]["warmup"]["bars"]["ema_dist_50_1min"]
    for cut in (777, 1234):  # cut points the measurement did not use
        part = recipe.features(recipe.load(one.iloc[cut:]), 0)
        agree = _agree(part, full[:, cut:], typical)
        assert agree[:, need:].all()
        assert not agree[j, need // 4 : need // 2].all()  # the EMA's unstable period: a lookback of 50 is not enough


def test_old_bundles_say_in_one_line_that_raw_bars_need_a_new_bundle(tmp_path, raw_bars):
    golden = Path(__file__).parents[1] / "golden" / "v1" / "xgboost"
    bundle = ModelBundle.load(golden)
    with pytest.raises(BundleError, match="holds no recipe of prepare") as err:
        bundle.predict_bars(raw_bars)
    assert "\n" not in str(err.value)


def test_bad_bars_are_refused_with_the_reason(fitted_run, raw_bars):
    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    bad = raw_bars.head(300).copy()
    bad.loc[5, "high"] = bad.loc[5, "low"] / 2
    with pytest.raises(PrepareError, match="high below low"):
        bundle.predict_bars(bad)
    with pytest.raises(PrepareError, match="5min apart, but the model was trained on 1min bars"):
        bundle.predict_bars(raw_bars.head(300).iloc[::5])  # 5-minute bars for a 1-minute model
    shifted = raw_bars.head(300).assign(datetime=pd.to_datetime(raw_bars["datetime"].head(300)) + pd.Timedelta(seconds=30))
    with pytest.raises(PrepareError, match="not on the 1min grid"):
        bundle.predict_bars(shifted)


def test_predict_command_reads_raw_bars(fitted_run, raw_bars, run_predictions, tmp_path):
    run = fitted_run("xgboost")
    source = tmp_path / "bars.csv"
    raw_bars.to_csv(source, index=False)
    out = tmp_path / "preds.parquet"
    assert main(["predict", "--bundle", str(run / "bundle"), "--input", str(source), "--output", str(out)]) == 0
    assert_reproduces(pd.read_parquet(out), run_predictions(run))
    # a directory of files, one per symbol named by the file, as prepare reads them
    (tmp_path / "bars").mkdir()
    for symbol, part in raw_bars.groupby("symbol"):
        part.drop(columns="symbol").to_parquet(tmp_path / "bars" / f"{symbol}.parquet", index=False)
    assert main(["predict", "--bundle", str(run / "bundle"), "--input", str(tmp_path / "bars"), "--output", str(out),
                 "--overwrite"]) == 0
    assert_reproduces(pd.read_parquet(out), run_predictions(run))


@pytest.fixture(scope="module")
def multires_run(sample_dir, tmp_path_factory) -> Path:
    """A multi-resolution model (raw-bar windows at 5min and 15min) fitted for one epoch on the sample data."""
    import lightning as L
    import torch

    from mlfactory import FactoryDataModule, RunRecord, create_model

    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=1, logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path_factory.mktemp("mr")), name="mr"),
                        callbacks=[RunRecord(importance_samples=0)], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_train_batches=4)
    datamodule = FactoryDataModule(data_dir=str(sample_dir), horizon=5, input_kind="multires",
                                   timeframes=["5min", "15min"], lookback=6, batch_size=256)
    trainer.fit(create_model("multires", hidden_size=8), datamodule=datamodule)
    return Path(trainer.log_dir)


def test_multires_runs_write_a_bundle_that_reads_raw_bars(multires_run, run_predictions, raw_bars):
    bundle = ModelBundle.load(multires_run / "bundle")
    assert bundle.input_kind == "multires" and bundle.spec["input"]["multires"]["lookback"] == {"5min": 6, "15min": 6}
    reference = run_predictions(multires_run)
    assert_reproduces(bundle.predict_bars(raw_bars), reference)
    # only the history the bundle asks for before the test period
    keep = np.zeros(len(raw_bars), dtype=bool)
    times = pd.to_datetime(raw_bars["datetime"], utc=True).dt.tz_localize(None).to_numpy().view(np.int64)
    for symbol, start in reference.groupby("symbol")["datetime"].min().items():
        rows = np.flatnonzero((raw_bars["symbol"] == symbol).to_numpy())
        first = rows[np.searchsorted(times[rows], start.value)]
        keep[first - bundle.required_history : rows[-1] + 1] = True
    assert_reproduces(bundle.predict_bars(raw_bars[keep]), reference)
    with pytest.raises(BundleError, match="reads raw bars, not feature tables"):
        bundle.predict(raw_bars)


def test_parity_holds_on_bars_with_gaps(tmp_path, run_predictions):
    """Short gaps filled by prepare (never predicted, skipped by windows) and a long one kept: still the run's predictions."""
    import lightning as L
    import torch

    from mlfactory import FactoryDataModule, RunRecord, create_model
    from mlfactory.prepare import prepare_splits

    bars = generate_bars(n_bars=2000, symbols=("GAPA", "GAPB"), seed=3)
    rng = np.random.default_rng(0)
    drop = np.zeros(len(bars), dtype=bool)
    for start in rng.choice(np.arange(200, len(bars) - 10), size=25, replace=False):
        drop[start : start + rng.integers(1, 4)] = True  # gaps of 1-3 bars: filled
    drop[1500:1530] = True  # 30 bars: kept as a gap
    gapped = bars[~drop].reset_index(drop=True)
    data = prepare_splits(gapped, tmp_path / "data", horizons=(5,), timeframes=("1min",))
    meta = json.loads((data / "scaling_metadata.json").read_text())
    assert meta["input"]["repairs"]["bars_filled"] > 0 and meta["input"]["gaps_kept"]["count"] > 0

    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=1, logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="gaps"),
                        callbacks=[RunRecord(importance_samples=0)], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_train_batches=4)
    trainer.fit(create_model("lstm", hidden_size=8), datamodule=FactoryDataModule(
        data_dir=str(data), horizon=5, seq_len=SEQ_LEN, batch_size=256))
    run = Path(trainer.log_dir)
    bundle = ModelBundle.load(run / "bundle")
    out = bundle.predict_bars(gapped)
    assert len(out) == len(gapped)  # one row per real bar: the filled ones are not predicted
    assert_reproduces(out, run_predictions(run))
