"""Every shipped config starts with the command that runs it, and validates as that command's spec."""
from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.config import read_yaml, validate
from raysweep.merge.recipes import parse_recipe
from raysweep.sweep.spec import SweepSpec

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert any(p.name == "demo.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_first_line_is_the_command_and_config_validates(path):
    first = path.read_text().splitlines()[0]
    words = first.split()
    assert words[:2] == ["#", "raysweep"], f"{path.name}: first line must be '# raysweep ...'"
    command = words[2]
    assert words[3] == f"configs/{path.name}"
    data = read_yaml(path)
    if command == "sweep":
        validate(SweepSpec, data, str(path))
    elif command == "merge":
        assert "--out" in words
        parse_recipe(data, str(path))
    else:
        pytest.fail(f"{path.name}: unknown command {command!r}")
