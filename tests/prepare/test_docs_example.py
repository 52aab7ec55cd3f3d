"""The worked example of docs/data.md ("Preparing splits from raw bars") prints what the page shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlfactory.cli import main
from mlfactory.data.synthetic import generate_bars

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def documented_output() -> list[str]:
    section = DOC.read_text().split("## Preparing splits from raw bars", 1)[1]
    console = re.search(r"```console\n\$ (mlfactory prepare [^\n]*)\n(.*?)```", section, re.S)
    assert console, "the worked example's console block is missing"
    command, output = console.group(1), console.group(2)
    assert command == "mlfactory prepare --input BTCUSD.csv --output data/splits/scaled --horizons 5 10 20"
    return [line for line in output.splitlines() if not line.startswith("prepare:")]


def test_worked_example_output_matches_the_docs(tmp_path, monkeypatch, capsys):
    # The documented BTCUSD.csv: 30,000 synthetic 1-minute bars with three minutes missing in two gaps.
    bars = generate_bars(n_bars=30_000, symbols=["BTCUSD"], seed=5).drop(columns="symbol")
    bars = bars.drop(index=[12_000, 12_001, 20_500]).reset_index(drop=True)
    bars.columns = ["Timestamp", "Open", "High", "Low", "Close", "Volume"]
    bars["Timestamp"] = bars["Timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    monkeypatch.chdir(tmp_path)
    bars.round(4).to_csv("BTCUSD.csv", index=False)

    assert main(["prepare", "--input", "BTCUSD.csv", "--output", "data/splits/scaled", "--horizons", "5", "10", "20",
                 "--no_progress"]) == 0
    assert capsys.readouterr().out.splitlines() == documented_output()
    meta = json.loads(Path("data/splits/scaled/scaling_metadata.json").read_text())
    assert meta["input"]["repairs"]["gaps_filled"] == 2 and meta["input"]["repairs"]["bars_filled"] == 3
    assert meta["split"]["val_start"] == "2024-01-18T06:34:00+00:00"
