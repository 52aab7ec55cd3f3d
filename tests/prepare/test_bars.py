"""Reading bars: the formats accepted, the documented repairs, and one clear error for each bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlfactory.data.synthetic import generate_bars
from mlfactory.errors import DataError
from mlfactory.prepare import PrepareError, load_bars


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    """Two symbols of 300 one-minute bars, as the generator writes them."""
    return generate_bars(n_bars=300, symbols=["AAA", "BBB"], seed=2)


def one(frame: pd.DataFrame, symbol: str = "AAA") -> pd.DataFrame:
    return frame[frame["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)


def error(source, **kwargs) -> str:
    with pytest.raises(PrepareError) as caught:
        load_bars(source, **kwargs)
    assert isinstance(caught.value, DataError)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------
# Accepted inputs
# --------------------------------------------------------------------------------------------------


def test_a_dataframe_keeps_its_symbols_in_order_of_first_appearance(small):
    bars = load_bars(small)
    assert bars.symbols == ("AAA", "BBB") and bars.resolution_ns == 60 * 10**9 and len(bars) == 600
    np.testing.assert_array_equal(bars.close[bars.block(1)], small.loc[small["symbol"] == "BBB", "close"])
    assert bars.report["repairs"] == {"rows_sorted": 0, "duplicates_dropped": 0, "gaps_filled": 0, "bars_filled": 0}
    interleaved = small.sort_values(["datetime", "symbol"], ignore_index=True)
    again = load_bars(interleaved)
    np.testing.assert_array_equal(again.close, bars.close)
    assert again.report["repairs"]["rows_sorted"] == 0


def test_csv_with_separate_date_and_time_columns_in_any_case(small, tmp_path):
    frame = one(small)
    text = pd.DataFrame({
        "Date": frame["datetime"].dt.strftime("%Y-%m-%d"),
        "TIME": frame["datetime"].dt.strftime("%H:%M"),
        **{c.capitalize(): frame[c] for c in ("open", "high", "low", "close", "volume")},
    })
    text.to_csv(tmp_path / "EURUSD.csv", index=False, sep=";")
    bars = load_bars(tmp_path / "EURUSD.csv")
    assert bars.symbols == ("EURUSD",)
    np.testing.assert_array_equal(bars.times, frame["datetime"].astype("datetime64[ns, UTC]").dt.tz_localize(None)
                                  .to_numpy().view(np.int64))
    np.testing.assert_allclose(bars.close, frame["close"], rtol=1e-15)
    assert len(bars.report["sha256"]) == 64 and bars.report["files"][0]["name"] == "EURUSD.csv"


def test_offsets_are_converted_to_utc_and_epoch_numbers_are_read_by_magnitude(small, tmp_path):
    frame = one(small)
    local = frame.assign(datetime=frame["datetime"].dt.tz_convert("Europe/Berlin").astype(str))
    local.rename(columns={"datetime": "Timestamp"}).to_csv(tmp_path / "berlin.csv.gz", index=False)
    utc = load_bars(frame).times
    np.testing.assert_array_equal(load_bars(tmp_path / "berlin.csv.gz").times, utc)
    for unit, divisor in (("s", 10**9), ("ms", 10**6)):
        epoch = frame.assign(datetime=utc // divisor)
        np.testing.assert_array_equal(load_bars(epoch).times, utc, err_msg=unit)


def test_parquet_with_a_datetime_index_and_a_directory_of_files(small, tmp_path):
    indexed = one(small).set_index("datetime").rename(columns=str.upper)
    indexed.index.name = None  # an unnamed datetime index is the timestamp too
    indexed.to_parquet(tmp_path / "AAA.parquet")
    one(small, "BBB").to_csv(tmp_path / "BBB.csv", index=False)
    (tmp_path / "notes.md").write_text("not bars")
    bars = load_bars(tmp_path)
    assert bars.symbols == ("AAA", "BBB")
    np.testing.assert_array_equal(bars.close, load_bars(small).close)
    assert [f["name"] for f in bars.report["files"]] == ["AAA.parquet", "BBB.csv"]


# --------------------------------------------------------------------------------------------------
# Repairs
# --------------------------------------------------------------------------------------------------


def test_unsorted_rows_are_sorted_and_exact_duplicates_dropped(small):
    shuffled = small.sample(frac=1.0, random_state=0)
    doubled = pd.concat([shuffled, shuffled.iloc[:7]], ignore_index=True)
    bars = load_bars(doubled)
    reference = load_bars(small)
    for symbol in ("AAA", "BBB"):
        rows, expected = bars.block(bars.symbols.index(symbol)), reference.block(reference.symbols.index(symbol))
        np.testing.assert_array_equal(bars.close[rows], reference.close[expected])
        np.testing.assert_array_equal(bars.times[rows], reference.times[expected])
    assert bars.report["repairs"]["rows_sorted"] > 100 and bars.report["repairs"]["duplicates_dropped"] == 7


def test_short_gaps_are_filled_with_flat_bars_and_long_gaps_kept(small):
    frame = one(small)
    gappy = frame.drop(index=[10, 11, 12] + list(range(100, 160))).reset_index(drop=True)
    bars = load_bars(gappy, fill_gaps=5)
    assert len(bars) == len(frame) - 60 and bars.filled.sum() == 3
    filled = np.flatnonzero(bars.filled)
    np.testing.assert_array_equal(filled, [10, 11, 12])
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(bars, column)[filled], frame["close"][9])
    assert (bars.volume[filled] == 0).all()
    assert bars.report["repairs"]["gaps_filled"] == 1 and bars.report["repairs"]["bars_filled"] == 3
    assert bars.report["gaps_kept"] == {"count": 1, "largest": "0 days 01:01:00", "short_but_market_closed": 0}
    unfilled = load_bars(gappy, fill_gaps=0)
    assert not unfilled.filled.any() and unfilled.report["gaps_kept"]["count"] == 2


# --------------------------------------------------------------------------------------------------
# Bad input: one clear error each
# --------------------------------------------------------------------------------------------------


def test_missing_columns_are_named(small):
    assert "missing columns ['volume']" in error(small.drop(columns="volume"))
    assert "missing columns ['datetime']" in error(small.drop(columns="datetime"))
    assert "same name ignoring case" in error(small.assign(Close=small["close"]))


def test_unparsable_and_empty_timestamps_name_the_line(small, tmp_path):
    frame = one(small).astype({"datetime": str})
    frame.loc[41, "datetime"] = "not a time"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    message = error(tmp_path / "bad.csv")
    assert "bad.csv line 43" in message and "'not a time'" in message
    frame.loc[41, "datetime"] = None
    assert "timestamp is empty" in error(frame)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f: f.assign(close=f["close"].astype(object).where(f.index != 5, "n/a")), "holds 'n/a', not a finite"),
        (lambda f: f.assign(open=f["open"].where(f.index != 5, np.nan)), "column 'open' holds nan"),
        (lambda f: f.assign(low=f["low"].where(f.index != 5, 0.0)), "has a price <= 0"),
        (lambda f: f.assign(volume=f["volume"].where(f.index != 5, -1.0)), "has a negative volume"),
        (lambda f: f.assign(high=f["low"] * 0.99, low=f["high"]), "has high below low"),
        (lambda f: f.assign(high=f["high"].where(f.index != 5, f["close"] * 0.9999)), "high below open or close"),
        (lambda f: f.assign(low=f["low"].where(f.index != 5, f["high"])), "low above open or close"),
    ],
    ids=["text price", "missing price", "zero price", "negative volume", "high<low", "high<close", "low>open"],
)
def test_bad_prices_and_volumes(small, edit, expected):
    message = error(edit(small))
    assert expected in message and "row" in message


def test_conflicting_duplicates_are_an_error(small):
    clash = pd.concat([small, small.iloc[[3]].assign(close=small["close"].iloc[3] * 1.0001)], ignore_index=True)
    assert "same timestamp but different values" in error(clash)


def test_resolution_must_be_regular_whole_minutes_and_shared(small):
    seconds = one(small).assign(datetime=lambda f: f["datetime"].iloc[0] + pd.to_timedelta(np.arange(len(f)) * 30, "s"))
    assert "0 days 00:00:30 apart" in error(seconds)
    off_grid = one(small)
    off_grid.loc[50:, "datetime"] += pd.Timedelta(seconds=20)
    assert "1min apart (1 bars off the grid)" in error(off_grid)
    mixed = pd.concat([one(small).assign(symbol="A"), one(small).iloc[::5].assign(symbol="B")])
    assert "different bar resolutions (A: 1min, B: 5min)" in error(mixed)
    assert "single bar" in error(one(small).iloc[:1])


def test_unreadable_sources(tmp_path):
    assert "does not exist" in error(tmp_path / "nope.csv")
    (tmp_path / "bars.xlsx").write_text("x")
    assert "neither CSV" in error(tmp_path / "bars.xlsx")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert "holds no .csv" in error(empty_dir)
    (tmp_path / "blank.csv").write_text("")
    assert "is empty" in error(tmp_path / "blank.csv")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "cannot read" in error(tmp_path / "broken.parquet")
    (tmp_path / "header.csv").write_text("datetime,open,high,low,close,volume\n")
    assert "holds no bars" in error(tmp_path / "header.csv")
    with pytest.raises(PrepareError, match="fill_gaps"):
        load_bars(Path(tmp_path / "header.csv"), fill_gaps=-1)
