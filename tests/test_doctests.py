"""Docstring examples are tests: pytest collects the examples in mlfactory/, and doctest can see every one."""

from __future__ import annotations

import doctest
import importlib
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mlfactory"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


WITH_EXAMPLES = sorted(
    module_name(path) for path in PACKAGE.rglob("*.py") if ">>>" in path.read_text(encoding="utf-8")
)


def test_the_suite_runs_the_package_doctests():
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "mlfactory" in options["testpaths"]
    assert "--doctest-modules" in options["addopts"].split()


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_every_example_sits_in_a_docstring_that_doctest_finds(name):
    module = importlib.import_module(name)
    source = Path(module.__file__).read_text(encoding="utf-8")
    written = sum(line.lstrip().startswith(">>>") for line in source.splitlines())
    found = sum(len(test.examples) for test in doctest.DocTestFinder().find(module))
    assert found == written, f"{name}: {written - found} of its {written} examples would never run"
