"""`raysweep merge` through the real CLI: overrides, the exact result, and bad input -> exit 2."""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from raysweep.cli import main


@pytest.fixture()
def recipe(tmp_path, tiny_llama_pair):
    path = tmp_path / "expo.yaml"
    models = {k: str(v) for k, v in tiny_llama_pair.items()}
    path.write_text(yaml.safe_dump({"method": "expo", "models": models, "alpha": 0.5}))
    return path


def test_merge_cli_applies_overrides_and_writes_a_loadable_exact_checkpoint(
    recipe, tmp_path, tiny_llama_pair, capsys
):
    out = tmp_path / "merged"
    assert main(["merge", str(recipe), "alpha=0.25", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    sft = load_file(tiny_llama_pair["sft"] / "model.safetensors")
    aligned = load_file(tiny_llama_pair["aligned"] / "model.safetensors")
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    for name, tensor in sft.items():
        expected = (1.25 * aligned[name].float() - 0.25 * tensor.float()).to(tensor.dtype)
        assert torch.equal(merged[name], expected), name


def test_merge_cli_bad_input_exits_2_with_one_line(recipe, tmp_path, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    assert main(["merge", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err
    assert main(["merge", str(recipe), "alpha=abc", "--out", str(tmp_path / "x")]) == 2
    assert "alpha" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
