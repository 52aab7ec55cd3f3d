"""``mlfactory models``: the registered models, read without importing them."""

from __future__ import annotations

import argparse
import json

from mlfactory.registry import list_models


def list_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlfactory models", description="List the registered models.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    specs = list_models()
    if args.json:
        print(json.dumps([spec.__dict__ for spec in specs], indent=2))
        return 0
    header = ("name", "family", "input", "description")
    rows = [header] + [(s.name, s.family, s.input_kind, s.description) for s in specs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0
