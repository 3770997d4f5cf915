"""Build a reduced demo world into tmp_path and load every artefact with transformers (slow)."""
from __future__ import annotations

import json

import pytest

from raysweep.config import ConfigError
from raysweep.demo import task
from raysweep.demo.world import WorldSpec, ensure_world, resolve_demo_uri


@pytest.mark.slow
def test_quick_world_builds_loads_and_is_reused(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    lines: list[str] = []
    paths = ensure_world(tmp_path / "w", seed=0, quick=True, log=lines.append)
    assert any("sft done" in line for line in lines)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["spec"] == WorldSpec.quick().model_dump() and manifest["num_pairs"] > 0

    tok = AutoTokenizer.from_pretrained(paths.aligned)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, len(tok)) == (0, 1, 2, 512)
    sft = AutoModelForCausalLM.from_pretrained(paths.sft)
    aligned = AutoModelForCausalLM.from_pretrained(paths.aligned)
    assert sft.config.tie_word_embeddings and sft.config.hidden_size == 128
    assert sum(p.numel() for p in sft.parameters()) == pytest.approx(0.92e6, rel=0.02)
    assert any(not torch.equal(a, b) for a, b in zip(sft.parameters(), aligned.parameters()))
    rm = AutoModelForSequenceClassification.from_pretrained(paths.reward_model)
    assert rm.config.pad_token_id == 0 and rm.config.num_labels == 1
    text = task.format_prompt("fruit", 2, "pear") + " good pear, kind plum."
    ids = tok([text], return_tensors="pt")
    assert rm(**ids).logits.shape == (1, 1)

    rows = [json.loads(line) for line in paths.prompts.read_text().splitlines()]
    assert len(rows) == 216 and {"id", "prompt"} <= rows[0].keys()
    assert all(task.parse_prompt(r["prompt"]) for r in rows)
    pairs = [json.loads(line) for line in paths.pairs.read_text().splitlines()]
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)

    # complete: reused without rebuilding; a missing manifest means half-built: rebuilt
    lines.clear()
    assert ensure_world(tmp_path / "w", seed=0, quick=True, log=lines.append) == paths
    assert lines == []
    paths.manifest.unlink()

    def interrupted_build(paths, *args):
        assert not paths.sft.exists()  # the stale world was cleared before building
        raise KeyboardInterrupt

    monkeypatch.setattr("raysweep.demo.world._build", interrupted_build)
    with pytest.raises(KeyboardInterrupt):
        ensure_world(tmp_path / "w", seed=0, quick=True, log=lines.append)
    assert any("rebuilding" in line for line in lines) and not paths.manifest.exists()


def test_resolve_demo_uri_rejects_unknown_names():
    with pytest.raises(ConfigError, match="expected demo://<name> with name in sft, aligned"):
        resolve_demo_uri("demo://nope")
    with pytest.raises(ConfigError, match="unknown demo artefact"):
        resolve_demo_uri("s3://bucket/model")


def test_root_with_foreign_files_is_never_wiped(tmp_path, monkeypatch):
    def no_build(*args):
        raise AssertionError("must not build into a foreign folder")

    monkeypatch.setattr("raysweep.demo.world._build", no_build)
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sft").mkdir()  # a world-like name does not make the folder a world
    with pytest.raises(ConfigError, match=rf"^{mine}: exists and is not a demo world folder$"):
        ensure_world(mine, quick=True, log=lambda _: None)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no lock file beside it
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a demo world folder"):
        ensure_world(afile, quick=True, log=lambda _: None)
    assert afile.read_text() == "x"


@pytest.mark.parametrize(
    "leftovers",
    [
        [],  # empty folder
        ["prompts.jsonl", "train_prompts.jsonl", "sft/", ".pairs.jsonl.tmp", ".aligned.tmp/"],  # interrupted
        ["manifest.json", "sft/", "notes-of-a-future-version.txt"],  # a stale world's manifest
    ],
)
def test_empty_half_built_or_stale_world_is_rebuilt(tmp_path, monkeypatch, leftovers):
    built = []

    def record_build(paths, *args):
        assert list(paths.root.iterdir()) == []  # cleared before building
        built.append(paths.root)

    monkeypatch.setattr("raysweep.demo.world._build", record_build)
    root = tmp_path / "w"
    root.mkdir()
    for name in leftovers:
        if name.endswith("/"):
            (root / name).mkdir()
            (root / name / "model.safetensors").write_bytes(b"x")
        elif name == "manifest.json":
            (root / name).write_text(json.dumps({"version": "demo-v0", "seed": 0}))
        else:
            (root / name).write_text("partial")
    ensure_world(root, quick=True, log=lambda _: None)
    assert built == [root]
