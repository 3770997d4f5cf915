"""Checkpoint index: grouping per family, lazy single/sharded reads, compatibility errors, writer."""
from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from conftest import build_llama
from safetensors.torch import load_file, save_file

from raysweep.checkpoint_writer import write_checkpoint
from raysweep.checkpoints import (
    INDEX_FILE,
    CheckpointIndex,
    check_compatible,
    group_of,
    open_checkpoint,
)
from raysweep.config import ConfigError

FAMILY_NAMES = {
    # Llama / Mistral / Qwen2 / Gemma
    "model.embed_tokens.weight": "embed",
    "model.layers.0.self_attn.q_proj.weight": "layer.0",
    "model.layers.11.mlp.down_proj.weight": "layer.11",
    "model.layers.3.self_attn.q_proj.bias": "layer.3",
    "model.norm.weight": "final_norm",
    "lm_head.weight": "lm_head",
    # GPT-NeoX
    "gpt_neox.embed_in.weight": "embed",
    "gpt_neox.layers.5.attention.query_key_value.weight": "layer.5",
    "gpt_neox.final_layer_norm.bias": "final_norm",
    "embed_out.weight": "lm_head",
    # GPT-2
    "transformer.wte.weight": "embed",
    "transformer.wpe.weight": "embed",
    "transformer.h.7.attn.c_attn.weight": "layer.7",
    "transformer.ln_f.weight": "final_norm",
    # Phi (HF) and original Phi
    "model.final_layernorm.weight": "final_norm",
    "model.layers.2.dense.bias": "layer.2",
    "lm_head.bias": "lm_head",
    "transformer.embd.wte.weight": "embed",
    "lm_head.ln.weight": "final_norm",
    "lm_head.linear.weight": "lm_head",
}


@pytest.mark.parametrize("name,group", FAMILY_NAMES.items())
def test_group_of_families(name, group):
    assert group_of(name) == group


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "tied": build_llama(root / "tied", 0, tie=True, dtype=torch.bfloat16, layers=3),
        "untied": build_llama(root / "untied", 1, tie=False, layers=3),
    }


def test_open_single_file_lazy_and_exact(pair):
    index = open_checkpoint(pair["untied"])
    stored = load_file(pair["untied"] / "model.safetensors")
    assert sorted(index.names) == sorted(stored)
    assert index.num_layers == 3 and index.architecture == "LlamaForCausalLM"
    assert index.config["hidden_size"] == 64
    assert index.group("lm_head.weight") == "lm_head" and index.aliases == {}
    for name, tensor in stored.items():
        assert index.shape(name) == tuple(tensor.shape) and index.dtype(name) == tensor.dtype
        assert torch.equal(index.tensor(name), tensor)
    # one .safetensors file opened directly
    assert open_checkpoint(pair["untied"] / "model.safetensors").names == index.names


def test_tied_embeddings(pair):
    index = open_checkpoint(pair["tied"])
    assert "lm_head.weight" not in index.names and index.tied
    assert index.aliases == {"lm_head.weight": "model.embed_tokens.weight",
                             "embed_out.weight": "model.embed_tokens.weight"}
    assert index.group("lm_head.weight") == "embed"
    assert index.dtype("model.norm.weight") == torch.bfloat16


def test_unrecognised_name_is_config_error(tmp_path):
    save_file({"score.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match=r"score\.weight.*cannot tell its group"):
        open_checkpoint(tmp_path).group("score.weight")


def test_sharded_write_and_read(pair, tmp_path):
    src = open_checkpoint(pair["untied"])
    tensors = {n: src.tensor(n) for n in src.names}
    files = write_checkpoint(tensors, tmp_path, max_shard_bytes=40_000)
    assert len(files) > 2 and (tmp_path / INDEX_FILE).is_file()
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in tensors.values())
    reread = open_checkpoint(tmp_path)
    for name, tensor in tensors.items():
        assert torch.equal(reread.tensor(name), tensor)
    merged = {}
    for f in files:  # every shard is a valid safetensors file on its own
        merged.update(load_file(f))
    assert merged.keys() == tensors.keys()


def test_sharded_missing_shard_tensor(pair, tmp_path):
    src = open_checkpoint(pair["untied"])
    files = write_checkpoint({n: src.tensor(n) for n in src.names}, tmp_path, max_shard_bytes=40_000)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = files[0].name
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"model\.layers\.9\.mlp\.up_proj\.weight.*missing"):
        open_checkpoint(tmp_path)


def test_truncated_file(pair, tmp_path):
    shutil.copytree(pair["untied"], tmp_path / "m")
    file = tmp_path / "m" / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 100])
    with pytest.raises(ConfigError, match="truncated safetensors file") as err:
        open_checkpoint(tmp_path / "m")
    assert str(file) in str(err.value) and "\n" not in str(err.value)


def _write_raw(file, header: object, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "entry,pattern",
    [
        ({"dtype": "F32", "shape": [2]}, r"tensor w: header entry lacks data_offsets$"),
        ({"data_offsets": [0, 8]}, r"tensor w: header entry lacks dtype, shape$"),
        ([0, 8], r"tensor w: header entry is not an object$"),
        ({"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}, r"tensor w: unsupported dtype \['F32'\]$"),
        ({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}, r"tensor w: shape must be a list"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [8]}, r"tensor w: data_offsets must be \[begin, end\]"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, r"tensor w: byte range does not match"),
    ],
)
def test_malformed_header_entry(tmp_path, entry, pattern):
    file = tmp_path / "model.safetensors"
    _write_raw(file, {"__metadata__": {"format": "pt"}, "w": entry}, bytes(8))
    with pytest.raises(ConfigError, match=rf"^{file}: {pattern}") as err:
        open_checkpoint(tmp_path)
    assert "\n" not in str(err.value)


def test_header_not_an_object(tmp_path):
    _write_raw(tmp_path / "model.safetensors", ["w"])
    with pytest.raises(ConfigError, match=r"model\.safetensors: invalid safetensors header \(expected a JSON object\)$"):
        open_checkpoint(tmp_path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        open_checkpoint(tmp_path / "nope")
    with pytest.raises(ConfigError, match="only safetensors"):
        open_checkpoint(tmp_path)


def _index(tensors, arch="LlamaForCausalLM", path="x"):
    return CheckpointIndex.from_tensors(tensors, {"architectures": [arch]}, path=path)


BASE = {"model.embed_tokens.weight": torch.zeros(8, 4), "model.layers.0.mlp.up_proj.weight":
        torch.zeros(6, 4), "model.norm.weight": torch.zeros(4), "lm_head.weight": torch.zeros(8, 4)}


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"model.layers.0.mlp.up_proj.weight": torch.zeros(5, 4)},
         r"^tensor model\.layers\.0\.mlp\.up_proj\.weight: shape \[6, 4\] in a \(A\) but \[5, 4\] in b \(B\)$"),
        ({"model.norm.weight": torch.zeros(4, dtype=torch.bfloat16)},
         r"^tensor model\.norm\.weight: dtype F32 in a \(A\) but BF16 in b \(B\)$"),
        ({"model.embed_tokens.weight": torch.zeros(9, 4), "lm_head.weight": torch.zeros(9, 4)},
         r"^vocabulary mismatch: model\.embed_tokens\.weight, lm_head\.weight: 8 tokens in a \(A\) "
         r"but 9 in b \(B\)$"),
        ({"model.norm.weight": None}, r"^tensor model\.norm\.weight is in a \(A\) but missing from b \(B\)$"),
        ({"model.layers.1.mlp.up_proj.weight": torch.zeros(6, 4)},
         r"^tensor model\.layers\.1\.mlp\.up_proj\.weight is in b \(B\) but missing from a \(A\)$"),
    ],
)
def test_check_compatible_errors(change, pattern):
    other = {**BASE, **change}
    other = {k: v for k, v in other.items() if v is not None}
    with pytest.raises(ConfigError, match=pattern):
        check_compatible({"a": _index(BASE, path="A"), "b": _index(other, path="B")})


def test_check_compatible_architecture():
    with pytest.raises(ConfigError, match=r"^architecture mismatch: a \(A\) is LlamaForCausalLM but "
                                          r"b \(B\) is MistralForCausalLM$"):
        check_compatible({"a": _index(BASE, path="A"), "b": _index(BASE, "MistralForCausalLM", "B")})
    check_compatible({"a": _index(BASE), "b": _index(dict(BASE))})
