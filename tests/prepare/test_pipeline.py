"""prepare_splits and `mlfactory prepare` end to end: a split directory the container reads, and its record."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory import __version__
from mlfactory.cli import main
from mlfactory.data.container import TimeSeriesDataContainer, split_file
from mlfactory.data.synthetic import generate_bars
from mlfactory.prepare import PrepareError, prepare_splits

SPLITS = ("train", "val", "test")
FAST = {"timeframes": ["5min", "15min"]}  # short warm-up for the option tests


@pytest.fixture(scope="module")
def csv_input(bars_2sym, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "bars.csv"
    bars_2sym.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def built(csv_input, tmp_path_factory) -> Path:
    return prepare_splits(csv_input, tmp_path_factory.mktemp("out") / "scaled", horizons=(5, 10, 20))


@pytest.fixture(scope="module")
def short_bars() -> pd.DataFrame:
    return generate_bars(n_bars=3000, symbols=["SYNA", "SYNB"], seed=4)


def read(directory: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(directory / split_file(s)) for s in SPLITS}


def metadata(directory: Path) -> dict:
    return json.loads((directory / "scaling_metadata.json").read_text())


def test_the_container_reads_every_horizon(built):
    for h in (5, 10, 20):
        container = TimeSeriesDataContainer.from_parquet_dir(built, horizon=h)
        assert container.n_features == 190
        assert all(len(container.split(s)) > 500 for s in SPLITS)
        assert set(container.split("train").symbols) == {"SYNA", "SYNB"}


def test_split_files_hold_scaled_features_labels_weights_and_raw_bars(built, bars_2sym):
    meta = metadata(built)
    frames = read(built)
    names = meta["features"]
    for split, frame in frames.items():
        assert list(frame.columns[:2]) == ["datetime", "symbol"] and list(frame.columns[2:192]) == names
        assert list(frame.columns[-5:]) == ["open", "high", "low", "close", "volume"]
        assert (frame[names].dtypes == np.float32).all() and frame["label_h10"].dtype == np.int8
        for h in (5, 10, 20):
            assert frame[f"sample_weight_h{h}"].mean() == pytest.approx(1.0, rel=1e-5)
            assert (frame[f"sample_weight_h{h}"] > 0).all()
        raw = frame[["datetime", "symbol"]].merge(bars_2sym, on=["datetime", "symbol"], how="left")
        for column in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(frame[column].to_numpy(), raw[column].to_numpy())  # unscaled
    train = frames["train"][names]
    assert (train.median().abs() < 1e-3).all()  # robust-scaled on train


def test_metadata_records_everything_needed_to_reproduce(built, csv_input):
    meta = metadata(built)
    assert meta["scaler"] == "robust" and len(meta["features"]) == 190
    assert set(meta["center"]) == set(meta["scale"]) == set(meta["features"])
    assert meta["horizons"] == [5, 10, 20] and meta["purge_bars"] == 20 and meta["embargo_bars"] == 20
    assert meta["timeframes"] == ["1min", "5min", "10min", "15min", "20min", "25min", "30min", "1h", "4h"]
    assert meta["base_resolution"] == "1min"
    assert meta["train_range"] == meta["split_boundaries"]["train"]
    assert meta["split"]["method"] == "fractions" and meta["split"]["fractions"] == [0.7, 0.15, 0.15]
    assert meta["input"]["sha256"] == hashlib.sha256(csv_input.read_bytes()).hexdigest()
    assert meta["input"]["symbols"] == ["SYNA", "SYNB"] and meta["input"]["rows_read"] == 22_000
    assert meta["mlfactory_version"] == __version__
    assert meta["labels"]["barrier_k"] == 1.0 and meta["sample_weights"]["method"] == "average_uniqueness"
    frames = read(built)
    assert meta["rows"] == {s: len(f) for s, f in frames.items()}
    for split, (first, last) in meta["split_boundaries"].items():
        stamps = frames[split]["datetime"]
        assert (pd.Timestamp(first), pd.Timestamp(last)) == (stamps.min(), stamps.max())


def test_building_twice_gives_identical_splits(short_bars, tmp_path):
    a = prepare_splits(short_bars, tmp_path / "a", **FAST)
    b = prepare_splits(short_bars, tmp_path / "b", **FAST)
    for split in SPLITS:
        pd.testing.assert_frame_equal(read(a)[split], read(b)[split])
    assert metadata(a) == metadata(b)
    assert len(metadata(a)["features"]) == 30 + 20 + 20


def test_dates_scalers_and_return_attribution(short_bars, tmp_path):
    out = prepare_splits(short_bars, tmp_path / "dates", dates=("2024-01-03 06:00", "2024-01-03 14:00+00:00"),
                         scaler="standard", return_attribution=True, embargo=3, **FAST)
    meta = metadata(out)
    assert meta["split"] == {"method": "dates", "fractions": None, "val_start": "2024-01-03T06:00:00+00:00",
                             "test_start": "2024-01-03T14:00:00+00:00"}
    frames = read(out)
    assert frames["val"]["datetime"].min() == pd.Timestamp("2024-01-03 06:03", tz="UTC")
    assert meta["scaler"] == "standard" and meta["scaler_statistics"]["center"] == "mean"
    train = frames["train"][meta["features"]].to_numpy(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    weights = frames["train"]["sample_weight_h20"]
    assert weights.mean() == pytest.approx(1.0) and weights.std() > 0.3  # attribution spreads the weights
    assert meta["sample_weights"]["method"] == "average_uniqueness * return_attribution"


def test_filled_gap_bars_feed_the_indicators_but_are_never_rows(short_bars, tmp_path):
    gappy = short_bars.drop(index=[2000, 2001]).reset_index(drop=True)  # two missing minutes of SYNA
    out = prepare_splits(gappy, tmp_path / "gappy", **FAST)
    meta = metadata(out)
    assert meta["input"]["repairs"]["bars_filled"] == 2 and meta["input"]["per_symbol"]["SYNA"]["filled_bars"] == 2
    written = pd.concat(read(out).values())
    missing = set(short_bars.loc[[2000, 2001], "datetime"])
    assert not set(written.loc[written["symbol"] == "SYNA", "datetime"]) & missing


def test_output_is_written_atomically_and_never_overwritten_by_accident(short_bars, tmp_path):
    out = prepare_splits(short_bars, tmp_path / "out", **FAST)
    before = read(out)["train"]
    with pytest.raises(PrepareError, match="already exists and is not empty; pass overwrite=True to replace it"):
        prepare_splits(short_bars, out, **FAST)
    prepare_splits(short_bars, out, overwrite=True, horizons=(5,), **FAST)
    assert metadata(out)["horizons"] == [5] and len(read(out)["train"]) != len(before)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="is not a split directory"):
        prepare_splits(short_bars, tmp_path / "notes", overwrite=True, **FAST)
    short_bars.to_csv(tmp_path / "notes" / "bars.csv", index=False)
    with pytest.raises(PrepareError, match="holds the input"):
        prepare_splits(tmp_path / "notes" / "bars.csv", tmp_path / "notes", overwrite=True, **FAST)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    with pytest.raises(PrepareError, match="the val split is empty"):
        prepare_splits(short_bars, tmp_path / "failed", embargo=100_000, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "out"]  # no partial directory, no temporary


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"horizons": ()}, "horizons must be distinct positive"),
        ({"horizons": (5, 5)}, "horizons must be distinct positive"),
        ({"horizons": (2.5,)}, "each horizon must be a whole number of bars >= 1, got 2.5"),
        ({"horizons": ("five",)}, "each horizon must be a whole number"),
        ({"fractions": (0.5, 0.2, 0.2)}, "sum to 1"),
        ({"fractions": (0.7, 0.3)}, "three positive numbers"),
        ({"dates": ("2024-01-03",)}, "dates must be two timestamps"),
        ({"dates": ("2024-01-04", "2024-01-03")}, "dates must be increasing"),
        ({"dates": ("2024-01-03", "someday")}, "'someday' is not a date"),
        ({"dates": ("2024-01-03", "2024-01-04"), "fractions": (0.7, 0.15, 0.15)}, "not both"),
        ({"scaler": "zscore"}, "unknown scaler 'zscore'; choose one of robust, standard, minmax, none"),
        ({"barrier_k": 0}, "barrier_k must be a finite number > 0"),
        ({"embargo": -1}, "embargo must be a whole number of bars >= 0, got -1"),
        ({"vol_window": 1}, "vol_window must be a whole number of bars >= 2"),
        ({"fill_gaps": "x"}, "fill_gaps must be a whole number"),
        ({"timeframes": ["30s"]}, "unknown timeframe '30s'"),
    ],
)
def test_bad_options_are_refused_before_any_work(short_bars, tmp_path, options, message):
    with pytest.raises(PrepareError, match=message.replace("(", r"\(")):
        prepare_splits(short_bars, tmp_path / "out", **{**FAST, **options})
    assert not (tmp_path / "out").exists()


def test_too_few_bars_for_the_warm_up_says_which_timeframe(tmp_path):
    bars = generate_bars(n_bars=3000, symbols=["TINY"])
    with pytest.raises(PrepareError, match=r"symbol 'TINY' has no bar with every feature.*4h: never"):
        prepare_splits(bars, tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------------


def test_cli_prepare_writes_the_directory_and_says_how_to_train(short_bars, tmp_path, capsys):
    path = tmp_path / "bars.parquet"
    short_bars.to_parquet(path)
    out = tmp_path / "data" / "splits" / "scaled"
    code = main(["prepare", "--input", str(path), "--output", str(out), "--horizons", "5", "10", "--timeframes",
                 "5min", "15min", "--fractions", "0.6", "0.2", "0.2", "--embargo", "7", "--no_progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 70 features on 1min, 5min, 15min" in printed
    assert f"--data.data_dir {out} --data.horizon 10" in printed
    meta = metadata(out)
    assert meta["horizons"] == [5, 10] and meta["embargo_bars"] == 7 and meta["split"]["fractions"] == [0.6, 0.2, 0.2]
    TimeSeriesDataContainer.from_parquet_dir(out, horizon=10)


def test_cli_reports_bad_input_on_one_line(tmp_path, capsys):
    (tmp_path / "bars.csv").write_text("time,open,high,low,close\n2024-01-02 00:00,1,1,1,1\n")
    code = main(["prepare", "--input", str(tmp_path / "bars.csv"), "--output", str(tmp_path / "out"),
                 "--no_progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("mlfactory: error: bars.csv is missing columns ['volume']")
    with pytest.raises(SystemExit) as usage:
        main(["prepare", "--input", "x.csv"])  # --output is required: an argparse usage error
    assert usage.value.code == 2


def test_top_level_help_lists_prepare_without_importing_the_pipeline():
    code = (
        "import sys; from mlfactory.cli import main; main(['--help']); "
        "heavy = [m for m in ('talib', 'mlfactory.prepare.pipeline', 'pyarrow', 'torch') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "prepare    build splits from bars" in result.stdout
    assert "HEAVY []" in result.stdout
