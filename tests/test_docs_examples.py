"""The programmatic examples in docs/examples/ run as written."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def test_trainer_api_example_writes_a_complete_run_per_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFACTORY_EXAMPLE_FAST", "1")
    monkeypatch.setenv("MLFACTORY_EXAMPLE_ROOT", str(tmp_path))
    runpy.run_path(str(EXAMPLES / "trainer_api.py"), run_name="__main__")
    out = capsys.readouterr().out
    for name in ("xgboost", "lstm"):
        runs = list((tmp_path / "lightning_logs" / name).iterdir())
        assert len(runs) == 1 and f"{name}: run written to {runs[0]}" in out
        assert json.loads((runs[0] / "status.json").read_text())["status"] == "complete"
        assert (runs[0] / "predictions" / "test_predictions.npz").is_file()
