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
