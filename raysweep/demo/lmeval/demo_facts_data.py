"""Dataset loader for demo_facts.yaml (lm-eval imports this file by path via `!function`).

Reads the jsonl beside this file, so the task works wherever the package is installed
(a `data_files:` path in the YAML would resolve against the working directory instead).
"""
import json
from pathlib import Path

DATA = Path(__file__).with_name("demo_facts.jsonl")


def load(**_: object):
    """DatasetDict with one "test" split; lm-eval passes the task metadata as kwargs (unused)."""
    import datasets

    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
