"""`mlfactory predict --bundle`: chunked streaming equals one-shot prediction, with bounded memory."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.cli import main
from mlfactory.errors import DataError
from mlfactory.inference import ModelBundle
from mlfactory.inference.stream import predict_file

REPO = Path(__file__).resolve().parents[2]


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Symbols interleaved, as a file sorted by time is: chunks then cut across symbols."""
    return frame.sort_values(["datetime", "symbol"], kind="stable").reset_index(drop=True)


def test_cli_writes_what_predict_returns(fitted_run, raw_test, tmp_path, capsys):
    run = fitted_run("xgboost")
    raw_test.to_parquet(tmp_path / "features.parquet", row_group_size=300)
    code = main(["predict", "--bundle", str(run / "bundle"), "--input", str(tmp_path / "features.parquet"),
                 "--output", str(tmp_path / "preds.parquet"), "--chunk_rows", "256"])
    assert code == 0
    assert f"wrote {len(raw_test):,} predictions of xgboost" in capsys.readouterr().err
    expected = ModelBundle.load(run / "bundle").predict(raw_test)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "preds.parquet"), expected)


@pytest.mark.parametrize("name", ["lstm", "voting"])
def test_chunked_sequence_predictions_equal_unchunked(name, fitted_run, raw_test, tmp_path):
    bundle = ModelBundle.load(fitted_run(name) / "bundle")
    frame = in_time_order(raw_test)
    expected = bundle.predict(frame)
    assert expected["has_history"].any() and not expected["has_history"].all()

    # chunks of 37 rows hold 12 or 13 rows of each symbol: every window reaches back into earlier chunks
    frame.to_parquet(tmp_path / "features.parquet", row_group_size=100)
    rows = predict_file(bundle, tmp_path / "features.parquet", tmp_path / "preds.parquet", chunk_rows=37, progress=False)
    assert rows == len(frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "preds.parquet"), expected)

    # grouped by symbol, chunks that split one symbol's rows; CSV input
    frame.sort_values(["symbol", "datetime"]).to_csv(tmp_path / "features.csv", index=False)
    predict_file(bundle, tmp_path / "features.csv", tmp_path / "grouped.parquet", chunk_rows=50, progress=False)
    grouped = pd.read_parquet(tmp_path / "grouped.parquet")
    pd.testing.assert_frame_equal(
        grouped.sort_values(["datetime", "symbol"]).reset_index(drop=True),
        expected.sort_values(["datetime", "symbol"]).reset_index(drop=True),
    )


def test_predictor_carries_history_between_chunks(fitted_run, raw_test):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    frame = in_time_order(raw_test)
    predictor = bundle.predictor()
    cuts = [0, 1, 5, 40, 41, 300, len(frame)]
    chunked = pd.concat([predictor(frame.iloc[a:b]) for a, b in zip(cuts, cuts[1:])], ignore_index=True)
    pd.testing.assert_frame_equal(chunked, bundle.predict(frame))


def test_rows_out_of_time_order_across_chunks_are_refused(fitted_run, raw_test, tmp_path):
    bundle = ModelBundle.load(fitted_run("lstm") / "bundle")
    frame = in_time_order(raw_test)
    backwards = pd.concat([frame.iloc[300:], frame.iloc[:300]], ignore_index=True)
    backwards.to_parquet(tmp_path / "features.parquet")
    with pytest.raises(DataError, match="earlier than rows of the same symbol in an earlier chunk"):
        predict_file(bundle, tmp_path / "features.parquet", tmp_path / "preds.parquet", chunk_rows=100, progress=False)
    # nothing that looks like output is left behind
    assert list(tmp_path.iterdir()) == [tmp_path / "features.parquet"]


def test_cli_errors_are_one_line(fitted_run, raw_test, tmp_path, capsys):
    bundle = str(fitted_run("xgboost") / "bundle")
    raw_test.drop(columns=["vol_20_1min"]).to_csv(tmp_path / "features.csv", index=False)
    args = ["predict", "--bundle", bundle, "--input", str(tmp_path / "features.csv"), "--output", str(tmp_path / "p.parquet")]
    assert main(args) == 1
    assert "features.csv is missing 1 of the model's 30 feature columns: ['vol_20_1min']" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()

    raw_test.to_csv(tmp_path / "features.csv", index=False)
    assert main(args + ["--no_progress"]) == 0
    assert main(args) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--no_progress"]) == 0

    assert main(["predict", "--bundle", str(tmp_path / "nope"), "--input", "x.csv", "--output", "y.parquet"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bundle_command_parses_without_torch():
    code = (
        "import sys\n"
        "from mlfactory.cli import main\n"
        "try:\n"
        "    main(['predict', '--bundle', 'b', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print([m for m in ('torch', 'lightning') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "--chunk_rows" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _peak_bytes(bundle: ModelBundle, path: Path, output: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Peak of Python and numpy allocations (tracemalloc), and of pyarrow's pool sampled at every chunk."""
    import pyarrow as pa

    from mlfactory.inference.predictor import Predictor

    arrow_peak = 0
    predict_chunk = Predictor.__call__

    def sampled(self, frame):
        nonlocal arrow_peak
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        return predict_chunk(self, frame)

    monkeypatch.setattr(Predictor, "__call__", sampled)
    tracemalloc.start()
    try:
        predict_file(bundle, path, output, chunk_rows=5_000, progress=False)
        return tracemalloc.get_traced_memory()[1], arrow_peak
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_input_grows(fitted_run, tmp_path, monkeypatch):
    bundle = ModelBundle.load(fitted_run("xgboost") / "bundle")
    rng = np.random.default_rng(0)
    peaks = {}
    for n in (20_000, 200_000):
        frame = pd.DataFrame(rng.standard_normal((n, len(bundle.features))), columns=bundle.features)
        frame.insert(0, "symbol", "SYNA")
        frame.to_parquet(tmp_path / f"in_{n}.parquet", row_group_size=5_000)
        del frame
        peaks[n] = _peak_bytes(bundle, tmp_path / f"in_{n}.parquet", tmp_path / f"out_{n}.parquet", monkeypatch)
        assert len(pd.read_parquet(tmp_path / f"out_{n}.parquet", columns=["p_up"])) == n
    # ten times the rows, about the same memory
    (python_small, arrow_small), (python_large, arrow_large) = peaks[20_000], peaks[200_000]
    assert python_large < 2 * python_small, peaks
    assert arrow_large < 2 * max(arrow_small, 1 << 20), peaks
