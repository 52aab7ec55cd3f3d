"""benchmarks/models_default.py fills its table in sittings: rows merge, and a no-signal score above chance is flagged."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "models_default.py"
HEADER = ["| model | train s | val bal. acc |", "|---|---|---|"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("models_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_sitting_replaces_its_models_rows_and_keeps_the_others(script: ModuleType) -> None:
    old = [*HEADER, "| lstm | 80 | 0.40 |", "| mine | 1 | 0.5 |", "| xgboost | 15 | 0.44 |"]
    merged = script.merged_rows(old, HEADER, ["| lstm | 60 | 0.42 |", "| gru | 20 | 0.41 |"],
                                ["xgboost", "gru", "lstm"])
    assert merged == [*HEADER, "| xgboost | 15 | 0.44 |", "| gru | 20 | 0.41 |", "| lstm | 60 | 0.42 |",
                      "| mine | 1 | 0.5 |"]


def test_a_table_with_other_columns_is_replaced(script: ModuleType) -> None:
    old = ["| model | train s |", "|---|---|", "| lstm | 80 |"]
    assert script.merged_rows(old, HEADER, ["| gru | 20 | 0.41 |"], ["gru", "lstm"]) == [
        *HEADER, "| gru | 20 | 0.41 |"]


def test_the_canary_flags_a_no_signal_score_outside_the_contract_bands(script: ModuleType) -> None:
    # 5,292 test rows, 1,750 up and 1,750 down, horizon 5: bands +-0.058 (balanced accuracy), +-0.087 (AUC)
    support = {"down": 1750, "neutral": 1792, "up": 1750}
    assert script.canary_alarm({"test": 0.38, "auc": 0.56, "support": support}) == ""
    assert "balanced accuracy 0.400 outside 0.333 +- 0.058" in script.canary_alarm(
        {"test": 0.40, "auc": 0.5, "support": support})
    assert "AUC 0.600 outside 0.5 +- 0.087" in script.canary_alarm({"test": 0.34, "auc": 0.60, "support": support})
    assert script.canary_alarm({"error": "failed"}) == ""
