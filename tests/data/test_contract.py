"""The split contract is defined once (mlfactory/data/contract.py): writer and reader use the same names,
and no module of mlfactory imports itself through a cycle."""

from __future__ import annotations

import ast
import graphlib
import json
from pathlib import Path

import pyarrow.parquet as pq

import mlfactory
from mlfactory.data import contract
from mlfactory.data.container import TimeSeriesDataContainer


def test_writer_and_reader_share_one_definition_of_each_name():
    from mlfactory import metrics
    from mlfactory.data import container, multires
    from mlfactory.evaluation import classification
    from mlfactory.prepare import bars, pipeline, splits

    assert splits.SPLITS is container.SPLITS is pipeline.SPLITS is contract.SPLITS
    assert bars.BAR_COLUMNS is multires.CHANNELS is contract.RAW_BAR_COLUMNS
    assert pipeline.METADATA_FILE is container.METADATA_FILE is contract.METADATA_FILE
    assert pipeline.BARS_FILE is multires.BARS_FILE is contract.BARS_FILE
    assert pipeline.UNFINISHED_MARKER is container.UNFINISHED_MARKER is contract.UNFINISHED_MARKER
    assert metrics.NUM_CLASSES == classification.NUM_CLASSES == len(contract.CLASS_NAMES) == 3
    assert container.class_mapping() == {"0": {"label": -1, "name": "down"}, "1": {"label": 0, "name": "neutral"},
                                         "2": {"label": 1, "name": "up"}}


def test_prepared_files_follow_the_contract_schema_and_the_reader_finds_its_features(sample_dir):
    meta = json.loads((sample_dir / contract.METADATA_FILE).read_text())
    for split in contract.SPLITS:
        schema = pq.read_schema(sample_dir / contract.split_file(split))
        assert schema.remove_metadata() == contract.split_schema(meta["features"], tuple(meta["horizons"]))
        assert [c for c in schema.names if not contract.is_reserved(c)] == meta["features"]
    assert contract.label_horizons(pq.read_schema(sample_dir / contract.split_file("train")).names) == meta["horizons"]
    assert (sample_dir / contract.BARS_FILE).is_file()
    loaded = TimeSeriesDataContainer.from_parquet_dir(sample_dir, horizon=meta["horizons"][0])
    assert loaded.feature_names == meta["features"]


def test_the_version_has_its_own_module():
    from mlfactory.version import __version__

    assert mlfactory.__version__ is __version__


def _imports(path: Path, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Every mlfactory module ``module`` imports, at module level or inside functions (TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # an attribute of a module: the module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_no_import_cycles():
    """Package ``__init__`` files are left out: their lazy re-exports are not cycles."""
    root = Path(mlfactory.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    graph = {
        m: _imports(p, m, m in packages, set(files)) - packages for m, p in files.items() if m not in packages
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
