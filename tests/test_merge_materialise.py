"""`raysweep merge` (materialise / run_merge): bit-exact output on disk, HF-loadable, atomic."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_merge import recipe_cases, reference, same_bits, zoo  # noqa: F401 (fixture)

from raysweep.checkpoints import INDEX_FILE, open_checkpoint
from raysweep.config import ConfigError
from raysweep.merge.materialise import materialise, run_merge
from raysweep.merge.recipes import compile_recipe, parse_recipe, recipe_sources


def check_output(recipe, out: Path) -> None:
    """Every tensor in `out` equals the reference formula over the recipe's sources, bit for bit."""
    sources = {r: open_checkpoint(p) for r, p in recipe_sources(recipe).items()}
    table = compile_recipe(recipe, next(iter(sources.values())).num_layers)
    merged = open_checkpoint(out)
    first = sources[table.sources[0]]
    assert sorted(merged.names) == sorted(first.names)
    for name in merged.names:
        expect = reference([sources[r].tensor(name) for r in table.sources],
                           table.for_group(first.group(name)), first.dtype(name))
        assert same_bits(merged.tensor(name), expect), name


@pytest.mark.parametrize("case", ["expo", "expo_blocks", "soup", "partwise", "task_arithmetic"])
@pytest.mark.parametrize("dtype,tie", [(torch.bfloat16, True), (torch.float16, False), (torch.float32, True)])
def test_materialise_bit_exact(zoo, tmp_path, case, dtype, tie):  # noqa: F811
    recipe = parse_recipe(recipe_cases(zoo[(dtype, tie)])[case], case)
    out = materialise(recipe, tmp_path / "out", max_shard_bytes=50_000)
    check_output(recipe, out)
    assert (out / INDEX_FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left behind


def test_merged_folder_loads_with_transformers(zoo, tmp_path, tiny_tokenizer_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models = zoo[(torch.bfloat16, True)]
    aligned = tmp_path / "aligned"
    shutil.copytree(models["m1"], aligned)
    for f in tiny_tokenizer_dir.iterdir():
        shutil.copy(f, aligned / f.name)
    recipe = parse_recipe({"method": "expo", "models": {"sft": str(models["m0"]),
                                                        "aligned": str(aligned)}, "alpha": 0.5}, "r")
    out = materialise(recipe, tmp_path / "merged")
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["tie_word_embeddings"] is True
    assert (out / "tokenizer.json").read_bytes() == (aligned / "tokenizer.json").read_bytes()
    assert yaml.safe_load((out / "merge_recipe.yaml").read_text())["alpha"] == 0.5
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    merged = open_checkpoint(out)
    for name, param in model.state_dict().items():
        assert same_bits(param, merged.tensor(merged.aliases.get(name, name))), name
    AutoTokenizer.from_pretrained(out)


def test_output_exists_and_force(zoo, tmp_path):  # noqa: F811
    recipe = parse_recipe(recipe_cases(zoo[(torch.float32, False)])["soup"], "r")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=rf"^{out}: output folder exists \(use --force to replace it\)$"):
        materialise(recipe, out)
    assert (out / "keep.txt").read_text() == "mine"
    materialise(recipe, out, force=True)
    assert not (out / "keep.txt").exists()
    check_output(recipe, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _broken(models: dict, tmp_path: Path, kind: str) -> Path:
    """A copy of models["m1"] broken in one way."""
    dst = tmp_path / f"broken-{kind}"
    shutil.copytree(models["m1"], dst)
    file = dst / "model.safetensors"
    if kind == "truncated":
        file.write_bytes(file.read_bytes()[:-64])
    elif kind == "architecture":
        config = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**config, "architectures": ["MistralForCausalLM"]}))
    elif kind in ("nan", "missing"):
        from safetensors.torch import load_file, save_file

        tensors = load_file(file)
        if kind == "nan":
            tensors["model.layers.1.self_attn.q_proj.weight"][0, 0] = float("nan")
        else:
            del tensors["model.layers.1.mlp.up_proj.weight"]
        save_file(tensors, file, metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize(
    "kind,pattern",
    [
        ("truncated", r"broken-truncated/model\.safetensors: truncated safetensors file"),
        ("architecture", r"^architecture mismatch: sft \(.*\) is LlamaForCausalLM but aligned \(.*broken-"
                         r"architecture\) is MistralForCausalLM$"),
        ("nan", r"^models\.aligned \(.*broken-nan\): tensor model\.layers\.1\.self_attn\.q_proj\.weight "
                r"contains NaN or Inf$"),
        ("missing", r"^tensor model\.layers\.1\.mlp\.up_proj\.weight is in sft .* but missing from aligned"),
    ],
)
def test_bad_sources_write_nothing(zoo, tmp_path, kind, pattern):  # noqa: F811
    models = zoo[(torch.float32, False)]
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({
        "method": "expo", "models": {"sft": str(models["m0"]), "aligned": str(_broken(models, tmp_path, kind))},
    }))
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    with pytest.raises(ConfigError, match=pattern) as err:
        run_merge(recipe_file, out_root / "merged")
    assert "\n" not in str(err.value)
    assert list(out_root.iterdir()) == []
    # parent folders the merge had to create are removed again, the ones that existed are kept
    with pytest.raises(ConfigError, match=pattern):
        run_merge(recipe_file, out_root / "new" / "deeper" / "merged")
    assert list(out_root.iterdir()) == []


class _CountingTorch:
    """Stands in for the torch module inside materialise; counts torch.empty calls."""

    def __init__(self) -> None:
        self.empty_calls = 0

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *args, **kwargs):
        self.empty_calls += 1
        return torch.empty(*args, **kwargs)


def test_one_output_buffer_per_dtype(zoo, tmp_path, monkeypatch):  # noqa: F811
    import raysweep.merge.materialise as mat

    counting = _CountingTorch()
    monkeypatch.setattr(mat, "torch", counting)
    recipe = parse_recipe(recipe_cases(zoo[(torch.bfloat16, False)])["expo"], "r")
    out = materialise(recipe, tmp_path / "out")
    assert len(open_checkpoint(out).names) > 10
    assert counting.empty_calls == 1  # one largest-size buffer for the one dtype, not one per tensor
    check_output(recipe, out)


def test_mismatched_shapes(zoo, tmp_path):  # noqa: F811
    from conftest import build_llama

    wide = build_llama(tmp_path / "wide", 3, tie=False, layers=4, hidden=96)
    models = zoo[(torch.float32, False)]
    recipe = parse_recipe({"method": "expo", "models": {"sft": str(models["m0"]), "aligned": str(wide)}}, "r")
    with pytest.raises(ConfigError, match=r"^tensor \S+: shape \[\d+(, \d+)?\] in sft \(.*\) but \[\d+(, \d+)?\] in aligned \(.*wide\)$"):
        materialise(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_merge_recipe_errors(zoo, tmp_path):  # noqa: F811
    models = zoo[(torch.float32, False)]
    base = {"method": "partwise", "models": {"before": str(models["m0"]), "after": str(models["m1"])},
            "head_ratio": 0.3}
    recipe_file = tmp_path / "ama.yaml"
    recipe_file.write_text(yaml.safe_dump({**base, "split": "1#2|0.4|0.3"}))
    with pytest.raises(ConfigError, match=rf"^{recipe_file}: ratios: 2 pivot\(s\) need 3 ratios \(got 2\)$"):
        run_merge(recipe_file, tmp_path / "out")
    recipe_file.write_text(yaml.safe_dump({**base, "split": "1#3|0.4|0.3|0.2"}))
    with pytest.raises(ConfigError, match=r"^split: pivot 3 is beyond the last layer"):
        run_merge(recipe_file, tmp_path / "out")
    out = run_merge(recipe_file, tmp_path / "out", overrides=["split=1#2|0.4|0.3|0.2"])
    check_output(parse_recipe({**base, "split": "1#2|0.4|0.3|0.2"}, "r"), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ama.yaml", "out"]
