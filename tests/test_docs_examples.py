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

    # the notebook examples that read these runs back (README.md, docs/cli.md) run as written
    monkeypatch.chdir(tmp_path)
    for page in ("README.md", "cli.md"):
        (block,) = executed_blocks(page)
        namespace: dict = {}
        exec(compile(block, page, "exec"), namespace)
        run, test = namespace["run"], namespace["test"]
        assert run.kind == "fit" and run.state == "complete" and run.model in ("xgboost", "lstm")
        assert list(test.columns[:6]) == ["datetime", "symbol", "label", "p_down", "p_neutral", "p_up"]
        assert len(test) == run.metrics["test"]["n_samples"]
    assert len(namespace["board"]) == 2 and not namespace["curve"].empty
    assert type(namespace["bundle"]).__name__ == "ModelBundle"


# --- examples inside the docs' Markdown -------------------------------------------------------
DOCS = EXAMPLES.parent
MARKER = "<!-- executed by tests/test_docs_examples.py -->"


def executed_blocks(page: str) -> list[str]:
    """The Python blocks of ``docs/<page>`` (or README.md) that follow the marker, in order."""
    path = DOCS / page if page != "README.md" else DOCS.parent / page
    blocks = []
    for part in path.read_text().split(MARKER)[1:]:
        body = part.split("```python\n", 1)[1]
        blocks.append(body.split("\n```", 1)[0])
    assert blocks, f"{path} has no block marked {MARKER}"
    return blocks


def test_data_md_plain_dataloader_example_runs_as_written(sample_dir, capsys):
    (block,) = executed_blocks("data.md")
    namespace = {"data_dir": sample_dir}
    exec(compile(block, "docs/data.md", "exec"), namespace)
    printed = capsys.readouterr().out.strip()
    assert printed == "{'x': (256, 60, 30), 'y': (256,), 'w': (256,), 'row': (256,)}"
    import torch
    from torch.utils.data import DataLoader

    from mlfactory.data.windows import collate_batch

    dataset = namespace["container"].get_pytorch_sequences("val", seq_len=60)
    for plain, fast in zip(DataLoader(dataset, batch_size=100), DataLoader(dataset, batch_size=100,
                                                                           collate_fn=collate_batch)):
        assert plain.keys() == fast.keys() and all(torch.equal(plain[k], fast[k]) for k in plain)
    tabular = next(iter(DataLoader(namespace["container"].get_tabular_dataset("val"), batch_size=8)))
    assert tabular["x"].shape == (8, 30)
    bars = namespace["container"].get_multi_resolution_bars("val", timeframes=["5min", "15min"], lookback=4)
    plain, fast = next(iter(DataLoader(bars, batch_size=8))), next(iter(DataLoader(bars, batch_size=8,
                                                                                     collate_fn=collate_batch)))
    assert plain["x"].keys() == {"5min", "15min"} and plain["x"]["15min"].shape == (8, 4, 5)
    assert all(torch.equal(plain["x"][k], fast["x"][k]) for k in plain["x"])
